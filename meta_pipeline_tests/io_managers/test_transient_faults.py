"""Transient GCS errors (503, dropped connections) are retried safely."""

from __future__ import annotations

import dagster as dg
import pytest
from google.cloud import storage

from meta_pipeline.io_managers import PartitionStore
from meta_pipeline_tests.io_managers import synthetic
from meta_pipeline_tests.io_managers.faulty_proxy import FaultPlan, faulty_proxy
from meta_pipeline_tests.io_managers.synthetic import ASSET_KEY

PARTITION = "act_1|2026-11-01"


@pytest.mark.timeout(120)
def test_writes_and_reads_survive_503s_and_dropped_connections(
    instance: dg.DagsterInstance,
    bucket: str,
    emulator_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = FaultPlan(
        {
            ("upload", 1): "503",  # first data object
            ("upload", 3): "drop",  # third data object, connection cut mid-request
            ("upload", 6): "503",
            ("download", 1): "503",
            ("get-api", 2): "drop",
        }
    )
    with faulty_proxy(emulator_url, plan) as proxy_url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy_url)
        result = synthetic.execute(instance, PARTITION, pages=8)
        assert result.success
        store = PartitionStore(storage.Client(project="meta-test"), bucket, synthetic.PREFIX)
        ids = [r["id"] for r in store.iter_records(ASSET_KEY, PARTITION)]
        manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert len(plan.injected) == 5, plan.injected
    assert ids == [f"{p}-{r}" for p in range(8) for r in range(synthetic.PAGE_SIZE)]
    assert manifest is not None and len(manifest.objects) == 4
