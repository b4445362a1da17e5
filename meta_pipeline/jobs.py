"""Jobs over the account x day assets."""

import dagster as dg

from meta_pipeline.partitions import account_day_partitions

extract_job = dg.define_asset_job(
    "meta_extract",
    selection=dg.AssetSelection.groups("meta"),
    partitions_def=account_day_partitions,
    description="Every Meta asset for the selected account x day partitions.",
)

jobs = [extract_job]
