"""Every asset through the real Dagster CLI, against the simulator and the GCS emulator."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from meta_pipeline.simulator import SimulatorConfig
from meta_pipeline_tests.assets.conftest import (
    TOKEN,
    Pipeline,
    expected_insight_keys,
    expected_object_ids,
    make_pipeline,
)
from meta_pipeline_tests.assets.reexecution import reexecute_from_failure

INSIGHTS = dg.AssetKey(["meta", "insights"])


def _ids(pipeline: Pipeline, asset: str, partition: str) -> list[str]:
    return [str(r["id"]) for r in pipeline.store.iter_records(["meta", asset], partition)]


def _check_status(pipeline: Pipeline, asset: str, check: str, partition: str) -> str:
    key = dg.AssetCheckKey(dg.AssetKey(["meta", asset]), check)
    records = pipeline.instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
    for record in records:
        if record.partition == partition:
            return record.status.value
    raise AssertionError(f"no execution of check {check} of {asset} for {partition}")


@pytest.mark.timeout(600)
def test_every_asset_equals_the_source_for_accounts_in_different_time_zones(
    pipeline: Pipeline,
) -> None:
    world = pipeline.sim.world
    zones = {a.timezone_name for a in world.accounts}
    assert len(zones) == len(world.accounts) > 1
    day = dt.date.today() - dt.timedelta(days=2)
    for account in pipeline.accounts:
        partition = f"{account}|{day.isoformat()}"
        result = pipeline.materialize(partition)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

        for edge in ("campaigns", "adsets", "ads"):
            ids = _ids(pipeline, edge, partition)
            assert len(ids) == len(set(ids)), f"duplicates in {edge}"
            assert set(ids) == expected_object_ids(pipeline.sim, account, edge, day), edge
        ads = list(pipeline.store.iter_records(["meta", "ads"], partition))
        creative_ids = {str(a["creative"]["id"]) for a in ads if a.get("creative")}
        assert set(_ids(pipeline, "adcreatives", partition)) == creative_ids
        assert _ids(pipeline, "ad_accounts", partition) == [account]

        rows = list(pipeline.store.iter_records(INSIGHTS, partition))
        keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_insight_keys(pipeline.sim, account, day)
        assert keys, "the simulator serves insights for every recent day"

        spend = {r["campaign_id"]: Decimal(r["spend"]) for r in pipeline.store.iter_records(
            ["meta", "daily_campaign_spend"], partition
        )}  # fmt: skip
        source_spend: dict[str, Decimal] = {}
        for row in world.insights(account, since=day, until=day, level="campaign"):
            source_spend[str(row["campaign_id"])] = Decimal(row["spend"])
        assert spend == source_spend

        manifest = pipeline.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None
        assert manifest.final is False  # two days old: still inside the attribution window
        assert manifest.source["time_zone"] == world.account(account).timezone_name
        event = pipeline.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=INSIGHTS, asset_partitions=[partition]), limit=1
        ).records[0]
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["records"].value == len(rows)
        assert metadata["accuracy"].value == 1.0
        assert metadata["time_zone"].value == world.account(account).timezone_name
        assert metadata["final"].value is False
        assert str(metadata["manifest_uri"].value).endswith("/_manifest.json")
        for asset, check in [
            ("insights", "unique_primary_keys"),
            ("insights", "accuracy"),
            ("insights", "reconciles_with_account_totals"),
            ("campaigns", "complete"),
            ("ads", "complete"),
            ("adcreatives", "complete"),
        ]:
            assert _check_status(pipeline, asset, check, partition) == "SUCCEEDED", (asset, check)


def _checkpoints(pipeline: Pipeline, partition: str) -> list[dict]:
    records = pipeline.instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=INSIGHTS, asset_partitions=[partition]), limit=1
    ).records
    return [r.asset_observation.metadata["meta_checkpoint"].value for r in records]


def _insights_requests(pipeline: Pipeline) -> int:
    by_path = pipeline.sim.stats()["by_path"]
    return sum(count for path, count in by_path.items() if path.endswith("/insights"))


@pytest.fixture
def chaos_pipeline(tmp_path: Path, gcs_url: str) -> Iterator[Pipeline]:
    # Chaos without the faults that fail a run for good or stall it for minutes:
    # those are the clear-failure tests' business, not resumption's.
    permanent = ("code_100", "code_190", "code_200", "foreign_next", "hang", "job_stuck")
    config = SimulatorConfig(
        seed=5,
        accounts=1,
        scale=2.0,
        profile="chaos",
        token=TOKEN,
        today=dt.date.today(),
        fault_rates={name: 0.0 for name in permanent},
        latency_ms=20.0,
    )
    extra = {"META_PAGE_SIZE": "10", "GCS_RECORDS_PER_OBJECT": "10"}
    yield from make_pipeline(tmp_path, gcs_url, config, extra)


@pytest.mark.timeout(600)
def test_sigkill_mid_partition_under_chaos_resumes_and_equals_the_source(
    chaos_pipeline: Pipeline,
) -> None:
    pipeline = chaos_pipeline
    [account] = pipeline.accounts
    day = dt.date.today() - dt.timedelta(days=3)
    partition = f"{account}|{day.isoformat()}"
    expected = expected_insight_keys(pipeline.sim, account, day)
    assert len(expected) > 40, "enough rows for several pages of 10"

    log = pipeline.home / "killed-run.log"
    child = pipeline.popen_materialize(partition, "meta/insights", log)
    deadline = time.monotonic() + 240
    try:
        while True:
            checkpoints = _checkpoints(pipeline, partition)
            if checkpoints and len(checkpoints[0]["objects"]) >= 2:
                break
            if child.poll() is not None:
                tail = "\n".join(
                    line for line in log.read_text().splitlines() if "DEBUG" not in line
                )
                raise AssertionError(f"the run ended before two checkpoints:\n{tail[-4000:]}")
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        # SIGKILL the whole process group: the CLI and its step worker process.
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert pipeline.store.read_manifest(INSIGHTS, partition) is None

    [killed] = pipeline.instance.get_runs()
    pipeline.instance.report_run_failed(killed)
    pipeline.sim.reset_stats()
    resumed = reexecute_from_failure(pipeline.instance, killed.run_id)
    assert resumed.success
    resumed_requests = _insights_requests(pipeline)

    rows = list(pipeline.store.iter_records(INSIGHTS, partition))
    keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
    assert len(keys) == len(set(keys)), "no duplicates after the resume"
    assert set(keys) == expected, "nothing lost after the resume"
    manifest = pipeline.store.read_manifest(INSIGHTS, partition)
    assert manifest is not None and manifest.resumed

    pipeline.sim.reset_stats()
    fresh = pipeline.materialize(partition, "meta/insights")
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    full_requests = _insights_requests(pipeline)
    assert resumed_requests < full_requests
