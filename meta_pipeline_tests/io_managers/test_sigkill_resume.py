"""A run killed with SIGKILL mid-partition is resumed by re-execution, without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from meta_pipeline.io_managers import PartitionStore
from meta_pipeline_tests.io_managers import synthetic
from meta_pipeline_tests.io_managers.synthetic import ASSET_KEY

PARTITION = "act_1|2026-11-01"
ROOT = Path(__file__).resolve().parents[2]


def _wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"child exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _latest_checkpoint(instance: dg.DagsterInstance) -> dict | None:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=ASSET_KEY, asset_partitions=[PARTITION]), limit=1
    ).records
    return records[0].asset_observation.metadata["meta_checkpoint"].value if records else None


@pytest.mark.timeout(120)
def test_sigkill_mid_partition_then_reexecution_resumes_without_duplicates(
    instance: dg.DagsterInstance,
    store: PartitionStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checkpoint every 2 objects: the child writes object 2 (pages 4-5) after its last
    # checkpoint and hangs fetching page 7, so one durable object is not yet checkpointed.
    monkeypatch.setenv("IO_TEST_CHECKPOINT_EVERY", "2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    config = {"pages": 10, "hang_after_pages": 7, "ledger_pages": [2]}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meta_pipeline_tests.io_managers.synthetic",
            *("--partition", PARTITION, "--config", json.dumps(config)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    location = store.location(ASSET_KEY, PARTITION)
    try:

        def unsaved_object_written() -> bool:
            checkpoint = _latest_checkpoint(instance)
            if not checkpoint or len(checkpoint["objects"]) != 2:
                return False
            names = store.list_object_names(location)
            return any(n.endswith("part-00002.jsonl.gz") for n in names)

        _wait_for(unsaved_object_written, "2 checkpointed objects and a third written", child)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    [killed_run] = instance.get_runs()
    assert store.read_manifest(ASSET_KEY, PARTITION) is None
    written_before_kill = sorted(store.list_object_names(location))
    # What run monitoring does for a dead worker: mark the run failed, then re-execute it.
    instance.report_run_failed(killed_run)
    result = synthetic.reexecute_from_failure(instance, killed_run.run_id)
    assert result.success

    [resumed] = synthetic.OPENED_SOURCES
    assert resumed.opened_with[0]["next_page"] == 4
    assert resumed.yielded_pages == [4, 5, 6, 7, 8, 9]
    ids = [r["id"] for r in store.iter_records(ASSET_KEY, PARTITION)]
    assert ids == [f"{p}-{r}" for p in range(10) for r in range(synthetic.PAGE_SIZE)]
    manifest = store.read_manifest(ASSET_KEY, PARTITION)
    assert manifest is not None
    assert manifest.resumed and manifest.resumed_from_objects == 2
    assert manifest.ledger_entries == 1
    # Object 2 written before the kill was rewritten under the same name: one copy.
    remaining = sorted(store.list_object_names(location))
    assert set(written_before_kill) <= set(remaining)
    assert len([n for n in remaining if n.endswith(".jsonl.gz")]) == len(manifest.objects) == 5
