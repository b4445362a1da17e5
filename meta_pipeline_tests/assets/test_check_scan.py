"""The checks' one read of a committed partition in the GCS emulator: keys and sums from
what is stored, fields in any order, duplicates found, sums exact."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from decimal import Decimal

import dagster as dg
import pytest
from google.cloud import storage

from meta_pipeline.assets import checks
from meta_pipeline.io_managers.store import PartitionStore

KEY = dg.AssetKey(["meta", "insights"])
PARTITION = "act_1|2026-11-01"
_buckets = itertools.count()


@pytest.fixture
def store(gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PartitionStore]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)
    client = storage.Client(project="meta-test")
    name = f"check-scan-{os.getpid()}-{next(_buckets)}"
    client.create_bucket(name)
    yield PartitionStore(client, name, "")


def _results(
    store: PartitionStore, records: list[dict], primary_key: tuple[str, ...], totals: bool
) -> tuple[dict[str, dg.AssetCheckResult], checks.SpendTotals | None]:
    store.commit_partition(
        KEY,
        PARTITION,
        iter(records),
        api_version="v25.0",
        fingerprint="fp",
        primary_key=primary_key,
        request_stats={"logical_requests": 1, "failed_requests": 0},
        records_per_object=7,  # several objects: the read spans them
    )
    sums = checks.SpendTotals() if totals else None
    results = checks.common_results(store, KEY, PARTITION, 0.9, completeness=False, totals=sums)
    return {r.check_name: r for r in results}, sums


@pytest.mark.timeout(60)
def test_stored_duplicates_are_found_and_sums_are_exact(store: PartitionStore) -> None:
    rows = [
        {"ad_id": str(i), "date_start": "2026-11-01", "age": "18-24", "spend": "0.10",
         "impressions": "3"}
        for i in range(20)
    ]  # fmt: skip
    rows += [
        dict(rows[4]),  # a repeat
        {"ad_id": "x", "date_start": "2026-11-01", "age": 25, "spend": 0.2, "impressions": 4},
        {"ad_id": "x", "date_start": "2026-11-01", "age": 25, "spend": None},  # a repeat
        {"ad_id": "x", "date_start": "2026-11-01", "age": "25", "spend": "bad"},
        {"ad_id": "y", "date_start": "2026-11-01"},  # age missing
    ]
    # Key columns then sum columns, as read for the insights checks.
    results, sums = _results(store, rows, ("ad_id", "date_start", "age"), totals=True)
    unique = results[checks.UNIQUE_KEYS]
    assert not unique.passed
    assert unique.metadata["duplicates"].value == 2
    assert (
        unique.metadata["examples"].value == '["4", "2026-11-01", "18-24"], ["x", "2026-11-01", 25]'
    )
    assert sums is not None
    assert sums.spend == Decimal("0.10") * 21 + Decimal("0.2")
    assert sums.impressions == 3 * 21 + 4

    # A key that shares a column with the sums: fields are picked by name, not position.
    results, sums = _results(store, rows[:20], ("spend", "ad_id"), totals=True)
    assert results[checks.UNIQUE_KEYS].passed
    assert sums is not None and sums.spend == Decimal("2.00")


@pytest.mark.timeout(60)
def test_a_clean_partition_passes_without_sums(store: PartitionStore) -> None:
    rows = [{"id": str(i), "name": f"n{i}"} for i in range(30)]
    results, sums = _results(store, rows, ("id",), totals=False)
    assert results[checks.UNIQUE_KEYS].passed
    assert results[checks.UNIQUE_KEYS].metadata["duplicates"].value == 0
    assert sums is None
    results, _ = _results(store, rows + rows[:1], ("id",), totals=False)
    assert not results[checks.UNIQUE_KEYS].passed


def test_key_batches_give_what_record_by_record_gives() -> None:
    def one_by_one(keys: list[tuple], width: int) -> tuple[int, list[str]]:
        tracker = checks.KeyTracker([f"c{i}" for i in range(width)])
        for k in keys:
            tracker.add_keys([k])
        return tracker.duplicates, tracker.examples

    batches = [
        [("1", "a"), ("2", "a"), ("3", "a")],  # fresh
        [("4", "a"), ("1", "a")],  # repeats an earlier batch
        [("5", "a"), ("5", "a")],  # repeats within the batch
        [("6\x1fa", "b"), ("6", "a\x1fb")],  # separator inside values: not the same key
        [("7", None), ("7", None), ("8", 8), ("8", "8")],  # non-strings
    ]
    tracker = checks.KeyTracker(["c0", "c1"])
    for batch in batches:
        tracker.add_keys(batch)
    flat = [k for batch in batches for k in batch]
    assert (
        (tracker.duplicates, tracker.examples)
        == one_by_one(flat, 2)
        == (
            3,
            ['["1", "a"]', '["5", "a"]', '["7", null]'],
        )
    )


def test_spend_columns_sum_to_what_record_by_record_sums() -> None:
    cases = [
        (["0.10", "0.20", "1e-3"], ["3", "4", "5"]),  # the usual: summed in C
        (["0.10", "", "x"], ["3", "4.0", ""]),  # strings Decimal or int refuse
        (["0.10", None, 0.2], ["3", 4, None]),  # not strings
    ]
    for spends, impressions in cases:
        by_columns, by_rows = checks.SpendTotals(), checks.SpendTotals()
        by_columns.add_columns(spends, impressions)
        by_rows.add_values(zip(spends, impressions, strict=True))
        assert (by_columns.spend, by_columns.impressions) == (by_rows.spend, by_rows.impressions)
    assert by_rows.spend == Decimal("0.3") and by_rows.impressions == 7


@pytest.mark.timeout(60)
def test_a_partition_without_a_primary_key_counts_every_repeat(store: PartitionStore) -> None:
    results, sums = _results(store, [{"id": "1"}, {"id": "2"}, {"id": "3"}], (), totals=True)
    assert results[checks.UNIQUE_KEYS].metadata["duplicates"].value == 2
    assert sums is not None and sums.spend == 0
