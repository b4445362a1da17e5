"""PartitionStore against the real emulator: batching, commits, ledger, atomic replacement."""

from __future__ import annotations

import re
import threading

import dagster as dg
import pytest
from google.cloud import storage

from meta_pipeline.io_managers import (
    CorruptObject,
    PartitionChangedWhileReading,
    PartitionNotCommitted,
    PartitionStore,
    StorageAccessError,
)
from meta_pipeline.pages import LedgerEntry
from meta_pipeline_tests.io_managers import synthetic
from meta_pipeline_tests.io_managers.synthetic import ASSET_KEY

PARTITION = "act_1|2026-11-01"


def _entry(n: int) -> LedgerEntry:
    return LedgerEntry(
        kind="object",
        request={"method": "GET", "path": f"/v23.0/{n}", "params": {"fields": "id"}},
        code=1,
        subcode=None,
        message="An unknown error occurred",
        fbtrace_id=f"t{n}",
        recorded_at="2026-11-02T00:00:00Z",
    )


@pytest.mark.timeout(60)
def test_commit_partition_batches_by_bytes_and_round_trips_records_and_ledger(
    store: PartitionStore,
) -> None:
    records = [{"id": str(i), "payload": "x" * 100, "nested": {"n": i}} for i in range(250)]
    manifest = store.commit_partition(
        ASSET_KEY,
        PARTITION,
        iter(records),
        [_entry(1), _entry(2)],
        api_version="v23.0",
        fingerprint="fp",
        source={"final": True},
        records_per_object=10_000,
        bytes_per_object=5_000,
    )
    # ~135 bytes a line: an object closes once it passes 5,000 uncompressed bytes.
    assert len(manifest.objects) > 5
    assert all(o.records <= 38 for o in manifest.objects)
    assert list(store.iter_records(ASSET_KEY, PARTITION)) == records
    assert store.read_ledger(ASSET_KEY, PARTITION) == [_entry(1), _entry(2)]
    reread = store.read_manifest(ASSET_KEY, PARTITION)
    assert reread == manifest
    assert reread.final is True and reread.records == 250 and reread.ledger_entries == 2


@pytest.mark.timeout(60)
def test_replacing_a_partition_removes_superseded_objects(store: PartitionStore) -> None:
    first = store.commit_partition(
        ASSET_KEY,
        PARTITION,
        ({"id": i} for i in range(30)),
        [_entry(1)],
        api_version="v1",
        fingerprint="fp",
        records_per_object=10,
    )
    second = store.commit_partition(
        ASSET_KEY,
        PARTITION,
        ({"id": i, "v": 2} for i in range(5)),
        (),
        api_version="v1",
        fingerprint="fp",
        records_per_object=10,
    )
    assert first.attempt_id != second.attempt_id
    location = store.location(ASSET_KEY, PARTITION)
    names = {store.relative_path_of(n) for n in store.list_object_names(location)}
    assert names == {o.path for o in second.objects} | {"_manifest.json"}
    assert store.read_ledger(ASSET_KEY, PARTITION) == []
    assert [r["v"] for r in store.iter_records(ASSET_KEY, PARTITION)] == [2] * 5


@pytest.mark.timeout(60)
def test_reading_an_uncommitted_partition_fails_clearly(store: PartitionStore) -> None:
    with pytest.raises(PartitionNotCommitted, match=re.escape(PARTITION)):
        list(store.iter_records(ASSET_KEY, PARTITION))
    assert list(store.iter_partitions_records(ASSET_KEY, [PARTITION], skip_missing=True)) == []


@pytest.mark.timeout(60)
def test_a_corrupted_object_is_detected_by_its_checksum(store: PartitionStore) -> None:
    manifest = store.commit_partition(
        ASSET_KEY, PARTITION, [{"id": 1}], (), api_version="v1", fingerprint="fp"
    )
    location = store.location(ASSET_KEY, PARTITION)
    name = location.object_name(manifest.objects[0].path)
    store.client.bucket(store.bucket_name).blob(name).upload_from_string(b"tampered")
    with pytest.raises(CorruptObject):
        list(store.iter_records(ASSET_KEY, PARTITION))


@pytest.mark.timeout(60)
def test_a_reader_sees_the_old_or_the_new_partition_never_a_mix(
    instance: dg.DagsterInstance, store: PartitionStore, client: storage.Client
) -> None:
    assert synthetic.execute(instance, PARTITION, pages=6, version="v1").success
    reader = PartitionStore(client, store.bucket_name, synthetic.PREFIX)
    location = store.location(ASSET_KEY, PARTITION)
    old_attempt = store.read_manifest(ASSET_KEY, PARTITION).attempt_id

    def read() -> tuple[tuple[str, ...], int]:
        records = list(reader.iter_records(ASSET_KEY, PARTITION))
        return tuple(sorted({r["version"] for r in records})), len(records)

    # Deterministic probe: mid re-materialization, with new objects already durable.
    probes: list[tuple[tuple[str, ...], int, int]] = []

    def probe(page: int, version: str) -> None:
        if version == "v2" and page == 6:
            new_objects = [
                n
                for n in store.list_object_names(location)
                if f"attempt={old_attempt}" not in n and n.endswith(".jsonl.gz")
            ]
            probes.append((*read(), len(new_objects)))

    synthetic.PAGE_HOOKS.append(probe)
    # And a concurrent reader looping over the whole replacement.
    seen: list[tuple[tuple[str, ...], int]] = []
    changed = 0
    stop = threading.Event()

    def loop() -> None:
        nonlocal changed
        while not stop.is_set():
            try:
                seen.append(read())
            except PartitionChangedWhileReading:
                changed += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        result = synthetic.execute(
            instance, PARTITION, pages=8, version="v2", page_delay_seconds=0.02
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.success
    assert probes == [(("v1",), 30, 3)]
    assert seen, "the concurrent reader never completed a read"
    assert set(seen) <= {(("v1",), 30), (("v2",), 40)}
    assert read() == (("v2",), 40)


def test_missing_bucket_is_a_clear_error(client: storage.Client) -> None:
    store = PartitionStore(client, "no-such-bucket", "meta")
    with pytest.raises(
        StorageAccessError, match=r"'no-such-bucket' does not exist \(setting GCS_BUCKET\)"
    ):
        store.check_access()


def test_missing_credentials_fail_at_once_naming_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from dagster_gcp import GCSResource

    from meta_pipeline.io_managers import MetaGCSIOManager

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    manager = MetaGCSIOManager(gcs=GCSResource(project="p"), bucket="some-bucket")
    with pytest.raises(StorageAccessError, match=r"credentials.*GOOGLE_APPLICATION_CREDENTIALS"):
        manager.setup_for_execution(dg.build_init_resource_context())


def test_committed_partitions_lists_only_partitions_with_a_manifest(store: PartitionStore) -> None:
    for key in ("act_2|2026-11-02", "act_1|2026-11-01"):
        store.commit_partition(ASSET_KEY, key, [{"id": 1}], (), api_version="v", fingerprint="f")
    # An unfinished attempt (objects, no manifest) is not a committed partition.
    location = store.location(ASSET_KEY, "act_3|2026-11-03")
    store.put_object(
        location, location.data_object_path("abc", 0), b"x", records=1, content_type="x"
    )
    other = store.location(["meta_test", "other"], "act_9|2026-11-09")
    store.commit_partition(
        other.asset, other.partition_key, [], (), api_version="v", fingerprint="f"
    )
    assert list(store.committed_partitions(ASSET_KEY)) == ["act_1|2026-11-01", "act_2|2026-11-02"]
