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
    assert (
        meta["manifest_uri"]
        == f"gs://{store.bucket_name}/it/meta_test/synthetic/account_id=act_1/date=2026-11-01/_manifest.json"
    )
    print(meta)


def _checkpoints(instance: dg.DagsterInstance, partition: str = PARTITION) -> list[dict]:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=ASSET_KEY, asset_partitions=[partition]), limit=1000
    ).records
    return [r.asset_observation.metadata["meta_checkpoint"].value for r in records]


def _bucket_names(store: PartitionStore, partition: str = PARTITION) -> list[str]:
    location = store.location(ASSET_KEY, partition)
    return sorted(store.relative_path_of(n) for n in store.list_object_names(location))


@pytest.mark.timeout(60)
def test_op_retry_resumes_from_the_last_checkpoint_without_duplicates(
    instance, store: PartitionStore
) -> None:
    # First attempt dies before page 7: objects 0-2 (pages 0-5) are durable and checkpointed.
    result = _execute(instance, pages=10, fail_after_pages=7, fail_attempts=1, ledger_pages=[1, 8])
    assert result.success
    first, retry = synthetic.OPENED_SOURCES
    assert first.opened_with == [None]
    # Page 6 was fetched but never durable: the retry continues right after page 5.
    assert retry.opened_with[0]["next_page"] == 6
    assert retry.yielded_pages == [6, 7, 8, 9]
    assert _ids(store) == _expected_ids(10)
    meta = _materialization_metadata(result)
    assert meta["resumed"] is True
    assert meta["resumed_from_objects"] == 3
    assert meta["records"] == 50
    assert meta["pages"] == 10
    # Ledger entries survive the resume exactly once each.
    assert meta["ledger_entries"] == 2
    ledger = store.read_ledger(ASSET_KEY, PARTITION)
    assert sorted(e.fbtrace_id for e in ledger) == ["trace-1", "trace-8"]
    manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert manifest is not None and manifest.resumed
    # Only what the manifest lists is left in the partition folder.
    listed = {o.path for o in manifest.objects} | {manifest.ledger.path, "_manifest.json"}
    assert set(_bucket_names(store)) == listed
    messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("Resuming meta_test/synthetic act_1|2026-11-01" in m for m in messages)


@pytest.mark.timeout(60)
def test_reexecution_of_a_failed_run_resumes_and_writes_each_page_once(
    instance, store: PartitionStore
) -> None:
    # Both attempts of the first run fail (retry resumes, then fails again).
    failed = _execute(instance, pages=12, fail_after_pages=3, fail_attempts=2)
    assert not failed.success
    # Attempt 1 wrote object 0 (pages 0-1) and died at page 3; attempt 2 resumed at page 2.
    assert [
        s.opened_with[0] and s.opened_with[0]["next_page"] for s in synthetic.OPENED_SOURCES
    ] == [None, 2]
    checkpointed = _checkpoints(instance)[0]
    assert len(checkpointed["objects"]) == 2
    assert store.read_manifest(ASSET_KEY, PARTITION) is None

    result = synthetic.reexecute_from_failure(instance, failed.run_id)
    assert result.success
    reexecuted = synthetic.OPENED_SOURCES[-1]
    assert reexecuted.opened_with[0]["next_page"] == 4
    assert _ids(store) == _expected_ids(12)
    meta = _materialization_metadata(result)
    assert meta["resumed"] is True and meta["resumed_from_objects"] == 2
    # Counters are cumulative across the attempts of the chain.
    assert meta["logical_requests"] == 12


@pytest.mark.timeout(60)
def test_a_checkpoint_after_the_last_page_is_not_a_fresh_start(
    instance, store: PartitionStore
) -> None:
    # The last page fills object 1, so a checkpoint with no resume state (nothing after
    # it) is logged before the complete one; the attempt dies in between.
    result = _execute(instance, pages=4, fail_at_end=True)
    assert result.success
    first, retry = synthetic.OPENED_SOURCES
    assert first.yielded_pages == [0, 1, 2, 3]
    assert _ids(store) == _expected_ids(4)
    assert retry.opened_with == [], "the stream was exhausted: nothing to fetch again"
    meta = _materialization_metadata(result)
    assert meta["records"] == 20 and meta["pages"] == 4
    assert meta["resumed"] is True and meta["resumed_from_objects"] == 2


@pytest.mark.timeout(60)
def test_reexecution_after_two_commits_by_failed_attempts_commits_again(
    instance, store: PartitionStore
) -> None:
    # Both attempts fail after their commit (as runs killed during the checks): the first
    # commits a complete stream, the retry commits it again; the run fails.
    failed = _execute(instance, pages=4, fail_attempts=2, fail_after_commit=True)
    assert not failed.success
    assert len(failed.get_asset_materialization_events()) == 2
    committed = store.read_manifest(ASSET_KEY, PARTITION)
    assert committed is not None

    result = synthetic.reexecute_from_failure(instance, failed.run_id)
    assert result.success
    assert synthetic.OPENED_SOURCES[-1].opened_with == [], "nothing fetched again"
    manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert manifest is not None and manifest.attempt_id == committed.attempt_id
    assert _ids(store) == _expected_ids(4)


@pytest.mark.timeout(60)
def test_rejected_resume_state_restarts_the_partition_cleanly(
    instance, store: PartitionStore
) -> None:
    result = _execute(instance, pages=8, fail_after_pages=5, fail_attempts=1, reject_resume=True)
    assert result.success
    first, retry = synthetic.OPENED_SOURCES
    assert first.opened_with == [None]
    # The retry offered the checkpoint, the API refused it, and the partition restarted.
    assert retry.opened_with[0] is not None
    assert retry.opened_with[1] is None
    assert retry.yielded_pages == list(range(8))
    assert _ids(store) == _expected_ids(8)
    meta = _materialization_metadata(result)
    assert meta["resumed"] is False and meta["resumed_from_objects"] == 0
    # The restart wrote a reset marker, so a later re-execution cannot reuse the old cursor.
    assert any(cp["reset_reason"] for cp in _checkpoints(instance))
    messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("resume state rejected by the API: cursor expired" in m for m in messages)


@pytest.mark.timeout(60)
def test_fresh_materialization_of_a_committed_partition_starts_over(
    instance, store: PartitionStore
) -> None:
    assert _execute(instance, pages=6, version="v1").success
    old_manifest = store.read_manifest(ASSET_KEY, PARTITION)
    result = _execute(instance, pages=4, version="v2")
    assert result.success
    assert synthetic.OPENED_SOURCES[-1].opened_with == [None]
    meta = _materialization_metadata(result)
    assert meta["resumed"] is False
    new_manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert old_manifest is not None and new_manifest is not None
    assert new_manifest.attempt_id != old_manifest.attempt_id
    records = list(store.iter_records(ASSET_KEY, PARTITION))
    assert {r["version"] for r in records} == {"v2"}
    assert len(records) == 20
    # Superseded objects of the first version are gone; only the new manifest's remain.
    assert meta["superseded_objects_removed"] == len(old_manifest.objects)
    assert set(_bucket_names(store)) == {o.path for o in new_manifest.objects} | {"_manifest.json"}


@pytest.mark.timeout(60)
def test_fresh_run_after_an_unfinished_one_starts_over_and_cleans_its_objects(
    instance, store: PartitionStore
) -> None:
    failed = _execute(instance, pages=10, fail_after_pages=5, fail_attempts=2)
    assert not failed.success
    leftovers = _bucket_names(store)
    assert leftovers and "_manifest.json" not in leftovers
    result = _execute(instance, pages=10, version="v2")
    assert result.success
    assert synthetic.OPENED_SOURCES[-1].opened_with == [None]
    manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert manifest is not None
    assert set(_bucket_names(store)) == {o.path for o in manifest.objects} | {"_manifest.json"}
    assert {r["version"] for r in store.iter_records(ASSET_KEY, PARTITION)} == {"v2"}


@pytest.mark.timeout(60)
def test_load_input_streams_a_range_of_partitions(instance, store: PartitionStore) -> None:
    for day, pages in (("2026-11-01", 3), ("2026-11-02", 4), ("2026-11-03", 5)):
        assert _execute(instance, f"act_2|{day}", pages=pages, version=day).success
    # Another account's partition of the same days must not leak into the range.
    assert _execute(instance, "act_1|2026-11-02", pages=2, version="other").success
    result = dg.materialize(
        [synthetic.synthetic, synthetic.three_day_summary],
        selection=[synthetic.three_day_summary],
        partition_key="act_2|2026-11-03",
        instance=instance,
        resources={"io_manager": synthetic.io_manager(), "summary_io_manager": dg.mem_io_manager},
    )
    assert result.success
    summary = result.output_for_node("three_day_summary")
    assert summary == {
        "records": (3 + 4 + 5) * synthetic.PAGE_SIZE,
        "unique": (3 + 4 + 5) * synthetic.PAGE_SIZE,
        "versions": ["2026-11-01", "2026-11-02", "2026-11-03"],
    }


@pytest.mark.timeout(60)
def test_hostile_partition_key_is_rejected_before_any_object_is_written(
    instance, store: PartitionStore
) -> None:
    instance.add_dynamic_partitions("meta_ad_accounts", ["act_1/../../evil"])
    result = _execute(instance, "act_1/../../evil|2026-11-01", pages=2)
    assert not result.success
    failure = next(
        e
        for e in instance.all_logs(result.run_id)
        if e.is_dagster_event and e.dagster_event.is_step_failure
    )
    assert "Invalid account partition key 'act_1/../../evil'" in str(
        failure.dagster_event.step_failure_data.error
    )
    assert list(store.client.list_blobs(store.bucket_name)) == []


@pytest.mark.timeout(60)
def test_missing_bucket_fails_at_once_with_a_clear_message(
    instance, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCS_BUCKET", "no-such-bucket-anywhere")
    result = _execute(instance, pages=2)
    assert not result.success
    assert synthetic.OPENED_SOURCES == []  # nothing was fetched
    errors = [
        str(e.dagster_event.event_specific_data.error)
        for e in instance.all_logs(result.run_id)
        if e.is_dagster_event
        and e.dagster_event.is_failure
        and getattr(e.dagster_event.event_specific_data, "error", None)
    ]
    assert any(
        "GCS bucket 'no-such-bucket-anywhere' does not exist (setting GCS_BUCKET)" in m
        for m in errors
    ), errors


@pytest.mark.timeout(60)
def test_load_input_of_a_range_with_an_uncommitted_partition_fails_clearly(
    instance, store: PartitionStore
) -> None:
    for day in ("2026-11-02", "2026-11-03"):
        assert _execute(instance, f"act_2|{day}", pages=1).success
    result = dg.materialize(
        [synthetic.synthetic, synthetic.three_day_summary],
        selection=[synthetic.three_day_summary],
        partition_key="act_2|2026-11-03",
        instance=instance,
        resources={"io_manager": synthetic.io_manager(), "summary_io_manager": dg.mem_io_manager},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "partition act_2|2026-11-01 has no committed manifest" in str(
        failure.step_failure_data.error
    )
