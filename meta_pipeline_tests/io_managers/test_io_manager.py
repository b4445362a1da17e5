"""The IO manager in real Dagster runs against the real GCS emulator."""

from __future__ import annotations

import dagster as dg
import pytest

from meta_pipeline.io_managers import PartitionStore
from meta_pipeline_tests.io_managers import synthetic
from meta_pipeline_tests.io_managers.synthetic import ASSET_KEY, JobExecutionResult

PARTITION = "act_1|2026-11-01"


def _execute(instance: dg.DagsterInstance, partition: str = PARTITION, **config: object):
    return synthetic.execute(instance, partition, **config)


def _materialization_metadata(result: JobExecutionResult) -> dict[str, object]:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _ids(store: PartitionStore, partition: str = PARTITION) -> list[str]:
    return [r["id"] for r in store.iter_records(ASSET_KEY, partition)]


def _expected_ids(pages: int) -> list[str]:
    return [f"{p}-{r}" for p in range(pages) for r in range(synthetic.PAGE_SIZE)]


@pytest.mark.timeout(60)
def test_round_trip_of_a_multi_object_partition(instance, store: PartitionStore) -> None:
    result = _execute(instance, pages=9, ledger_pages=[3])
    assert result.success
    manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert manifest is not None
    # 45 records, 10 per object: objects end on page boundaries (2 pages = 10 records).
    assert [o.records for o in manifest.objects] == [10, 10, 10, 10, 5]
    assert _ids(store) == _expected_ids(9)
    meta = _materialization_metadata(result)
    assert meta["records"] == 45
    assert meta["objects"] == 5
    assert meta["pages"] == 9
    assert meta["resumed"] is False
    assert meta["ledger_entries"] == 1
    assert meta["manifest_uri"] == f"gs://{store.bucket_name}/it/meta_test/synthetic/account_id=act_1/date=2026-11-01/_manifest.json"
    print(meta)
