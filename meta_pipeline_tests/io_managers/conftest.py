from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from google.cloud import storage

from meta_pipeline.gcs_emulator import running_gcs_emulator
from meta_pipeline.io_managers import PartitionStore
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME
from meta_pipeline_tests.io_managers import synthetic

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    with running_gcs_emulator() as url:
        yield url


@pytest.fixture
def gcs_env(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
    monkeypatch.setenv("IO_TEST_CHECKPOINT_EVERY", "1")
    return emulator_url


@pytest.fixture
def client(gcs_env: str) -> storage.Client:
    return storage.Client(project="meta-test")


@pytest.fixture
def bucket(client: storage.Client, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket per test (the emulator is shared by the session)."""
    name = f"io-test-{os.getpid()}-{next(_bucket_numbers)}"
    client.create_bucket(name)
    monkeypatch.setenv("GCS_BUCKET", name)
    return name


@pytest.fixture
def store(client: storage.Client, bucket: str) -> PartitionStore:
    return PartitionStore(client, bucket, synthetic.PREFIX)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """A real persistent instance in a temp DAGSTER_HOME (shared with child processes)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, ["act_1", "act_2"])
        yield instance


@pytest.fixture(autouse=True)
def _reset_hooks() -> Iterator[None]:
    synthetic.OPENED_SOURCES.clear()
    synthetic.PAGE_HOOKS.clear()
    yield
    synthetic.OPENED_SOURCES.clear()
    synthetic.PAGE_HOOKS.clear()
