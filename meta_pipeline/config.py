"""Resources from the environment (``.env`` supported): secrets only as ``dg.EnvVar``."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource

from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.io_managers.store import DEFAULT_RECORDS_PER_OBJECT
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.settings import ExtractionSettings

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"
DEFAULT_GCS_PREFIX = ""
DEFAULT_PAGE_SIZE = 500
DEFAULT_ASYNC_POLL_SECONDS = 2.0


def _setting(name: str, default: str) -> str:
    # Non-secret settings are plain values so the UI shows them; secrets stay EnvVar.
    return os.environ.get(name, "").strip() or default


class SettingError(ValueError):
    """A malformed setting; the message names it."""


def _int_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        raise SettingError(f"Invalid setting {name}={raw!r}: expected a positive whole number")
    return int(raw)


def _seconds_setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SettingError(f"Invalid setting {name}={raw!r}: expected a positive number of seconds")
    return value


def build_resources() -> dict[str, Any]:
    app_secret = dg.EnvVar("META_APP_SECRET") if os.environ.get("META_APP_SECRET") else None
    gcs = GCSResource(project=os.environ.get("GCS_PROJECT") or None)
    return {
        "meta": MetaAdsClient(
            access_token=dg.EnvVar("META_ACCESS_TOKEN"),
            app_secret=app_secret,
            graph_url=_setting("META_GRAPH_URL", DEFAULT_GRAPH_URL),
            api_version=_setting("META_API_VERSION", DEFAULT_API_VERSION),
            page_size=_int_setting("META_PAGE_SIZE", DEFAULT_PAGE_SIZE),
            # Small reports finish in seconds; the client backs off from here on long ones.
            async_poll_interval_seconds=_seconds_setting(
                "META_ASYNC_POLL_SECONDS", DEFAULT_ASYNC_POLL_SECONDS
            ),
        ),
        "io_manager": MetaGCSIOManager(
            gcs=gcs,
            bucket=dg.EnvVar("GCS_BUCKET"),
            prefix=_setting("GCS_PREFIX", DEFAULT_GCS_PREFIX),
            records_per_object=_int_setting("GCS_RECORDS_PER_OBJECT", DEFAULT_RECORDS_PER_OBJECT),
        ),
        "settings": ExtractionSettings(),
    }
