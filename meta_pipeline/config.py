"""Resources from the environment (``.env`` supported): secrets only as ``dg.EnvVar``."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource

from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.settings import ExtractionSettings

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
DEFAULT_GCS_PREFIX = "meta"


def _setting(name: str, default: str) -> str:
    # Non-secret settings are plain values so the UI shows them; secrets stay EnvVar.
    return os.environ.get(name, "").strip() or default


def build_resources() -> dict[str, Any]:
    app_secret = dg.EnvVar("META_APP_SECRET") if os.environ.get("META_APP_SECRET") else None
    gcs = GCSResource(project=os.environ.get("GCS_PROJECT") or None)
    return {
        "meta": MetaAdsClient(
            access_token=dg.EnvVar("META_ACCESS_TOKEN"),
            app_secret=app_secret,
            graph_url=_setting("META_GRAPH_URL", DEFAULT_GRAPH_URL),
            api_version=_setting("META_API_VERSION", DEFAULT_API_VERSION),
        ),
        "io_manager": MetaGCSIOManager(
            gcs=gcs,
            bucket=dg.EnvVar("GCS_BUCKET"),
            prefix=_setting("GCS_PREFIX", DEFAULT_GCS_PREFIX),
        ),
        "settings": ExtractionSettings(),
    }
