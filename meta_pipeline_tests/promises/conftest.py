"""Shared fixtures of the promise tests: one GCS emulator per session, one simulator per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from meta_pipeline.gcs_emulator import running_gcs_emulator


@pytest.fixture(scope="session")
def promises_gcs_url() -> Iterator[str]:
    with running_gcs_emulator() as url:
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = url  # google-cloud-storage in this process
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous
