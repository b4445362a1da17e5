"""meta_pipeline: Meta Marketing API to Google Cloud Storage, as Dagster assets."""
