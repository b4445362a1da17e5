"""Range runs: several days of one account in one Dagster run (the backfill policy's batch).

Each partition must still equal the source, carry its own materialization figures and
check results, and be committed on its own, so a run killed midway keeps the days it
committed and its re-execution commits them again without fetching them anew.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from meta_pipeline.assets.checks import RECONCILES, UNIQUE_KEYS
from meta_pipeline.run_coordinator import ACCOUNT_TAG, account_tags
from meta_pipeline.simulator import SimulatorConfig
from meta_pipeline_tests.assets.conftest import (
    DAGSTER_CLI,
    ROOT,
    TOKEN,
    Pipeline,
    expected_insight_keys,
    expected_object_ids,
    make_pipeline,
    materialize_args,
)
from meta_pipeline_tests.assets.reexecution import reexecute_from_failure

INSIGHTS = dg.AssetKey(["meta", "insights"])
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _days(count: int, back: int = 6) -> list[dt.date]:
    first = dt.date.today() - dt.timedelta(days=back)
    return [first + dt.timedelta(days=i) for i in range(count)]


def _range_args(account: str, days: list[dt.date], select: str) -> list[str]:
    span = f"{account}|{days[0].isoformat()}...{account}|{days[-1].isoformat()}"
    return materialize_args(select, "--partition-range", span)


def _materializations(pipeline: Pipeline, key: dg.AssetKey) -> dict[str, dg.AssetMaterialization]:
    records = pipeline.instance.fetch_materializations(key, limit=100).records
    found: dict[str, dg.AssetMaterialization] = {}
    for record in reversed(records):  # oldest first, so the newest wins
        event = record.asset_materialization
        if event is not None and event.partition is not None:
            found[event.partition] = event
    return found


def _check_statuses(pipeline: Pipeline, key: dg.AssetKey, check: str) -> dict[str, str]:
    history = pipeline.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, check), limit=50
    )
    statuses: dict[str, str] = {}
    for record in reversed(history):
        if record.partition is not None:
            statuses[record.partition] = record.status.value
    return statuses


@pytest.mark.timeout(600)
def test_a_range_run_commits_every_day_on_its_own_and_equals_the_source(
    pipeline: Pipeline,
) -> None:
    account = pipeline.accounts[0]
    days = _days(3)
    partitions = [f"{account}|{d.isoformat()}" for d in days]

    result = pipeline.dagster(*_range_args(account, days, "*"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    [run] = pipeline.instance.get_runs()
    assert run.tags[RANGE_START] == partitions[0] and run.tags[RANGE_END] == partitions[-1]
    for day, partition in zip(days, partitions, strict=True):
        for edge in ("campaigns", "adsets", "ads"):
            ids = [str(r["id"]) for r in pipeline.store.iter_records(["meta", edge], partition)]
            assert len(ids) == len(set(ids)), f"duplicates in {edge} {partition}"
            assert set(ids) == expected_object_ids(pipeline.sim, account, edge, day), edge
        rows = list(pipeline.store.iter_records(INSIGHTS, partition))
        keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate insight rows in {partition}"
        assert set(keys) == expected_insight_keys(pipeline.sim, account, day)
        manifest = pipeline.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.run_id == run.run_id
        assert manifest.date == day.isoformat() and manifest.records == len(rows)

    # Each partition's materialization carries its own figures, not the range's.
    materialized = _materializations(pipeline, INSIGHTS)
    assert sorted(materialized) == partitions
    for partition in partitions:
        manifest = pipeline.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None
        records = materialized[partition].metadata["records"]
        assert isinstance(records, dg.IntMetadataValue) and records.value == manifest.records
    assert len({m.metadata["records"] for m in materialized.values()}) > 1, (
        "the days differ in size, so identical figures would mean range-wide metadata"
    )
    # And its own check results.
    for check in (UNIQUE_KEYS, RECONCILES):
        statuses = _check_statuses(pipeline, INSIGHTS, check)
        assert {p: statuses.get(p) for p in partitions} == dict.fromkeys(partitions, "SUCCEEDED")


@pytest.fixture
def slow_pipeline(tmp_path: Path, gcs_url: str) -> Iterator[Pipeline]:
    config = SimulatorConfig(
        seed=5,
        accounts=1,
        scale=0.5,
        profile="clean",
        token=TOKEN,
        today=dt.date.today(),
        latency_ms=30.0,
    )
    extra = {"META_PAGE_SIZE": "10", "GCS_RECORDS_PER_OBJECT": "10"}
    yield from make_pipeline(tmp_path, gcs_url, config, extra)


@pytest.mark.timeout(600)
def test_a_range_run_killed_midway_keeps_the_days_it_committed(
    slow_pipeline: Pipeline,
) -> None:
    pipeline = slow_pipeline
    [account] = pipeline.accounts
    days = _days(4)
    partitions = [f"{account}|{d.isoformat()}" for d in days]
    log = pipeline.home / "killed-range-run.log"
    with log.open("w") as out:
        child = subprocess.Popen(
            [DAGSTER_CLI, *_range_args(account, days, "meta/insights")],
            env=pipeline.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240
    try:
        while pipeline.store.read_manifest(INSIGHTS, partitions[1]) is None:
            assert child.poll() is None, f"the run ended early:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, "day 2 was not committed in time"
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)

    committed = {
        p: m.attempt_id
        for p in partitions
        if (m := pipeline.store.read_manifest(INSIGHTS, p)) is not None
    }
    assert partitions[0] in committed and partitions[1] in committed
    assert len(committed) < len(partitions), "the kill landed after the last commit"
    [killed] = pipeline.instance.get_runs()
    assert not _materializations(pipeline, INSIGHTS), "killed before the step's events"
    pipeline.instance.report_run_failed(killed)

    resumed = reexecute_from_failure(pipeline.instance, killed.run_id)
    assert resumed.success

    for day, partition in zip(days, partitions, strict=True):
        rows = list(pipeline.store.iter_records(INSIGHTS, partition))
        keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicates in {partition}"
        assert set(keys) == expected_insight_keys(pipeline.sim, account, day), partition
        manifest = pipeline.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.run_id == resumed.run_id
        if partition in committed:
            # Committed again from the same objects, not fetched anew.
            assert manifest.attempt_id == committed[partition], partition
    assert sorted(_materializations(pipeline, INSIGHTS)) == partitions


def test_the_run_queue_tags_every_run_with_its_one_account() -> None:
    one_account = {RANGE_START: "act_12|2026-11-01", RANGE_END: "act_12|2026-11-30"}
    assert account_tags(one_account) == {ACCOUNT_TAG: "act_12"}
    assert account_tags({"dagster/partition/account": "act_7"}) == {ACCOUNT_TAG: "act_7"}
    # A range wins over partition tags (a job backfill's range runs carry its first partition's).
    stray = {**one_account, "dagster/partition/account": "act_7"}
    assert account_tags(stray) == {ACCOUNT_TAG: "act_12"}
    # Never Dagster's own partition tag: a range run carrying it would read as one partition.
    assert not ACCOUNT_TAG.startswith("dagster/partition")
    # One day of several accounts has no single account to tag.
    assert account_tags({RANGE_START: "act_1|2026-11-01", RANGE_END: "act_9|2026-11-01"}) == {}
    # Already tagged, or nothing to go by.
    assert account_tags({**one_account, ACCOUNT_TAG: "act_12"}) == {}
    assert account_tags({}) == {}
    # A hostile key is not tagged (the run itself fails, naming the key).
    assert account_tags({RANGE_START: "act_1/../x|2026-11-01", RANGE_END: "x"}) == {}
    assert account_tags({"dagster/partition/account": "act_1\n#"}) == {}


@pytest.mark.timeout(600)
def test_the_attribution_schedule_refreshes_an_accounts_window_in_one_run(
    pipeline: Pipeline,
) -> None:
    from meta_pipeline.definitions import defs
    from meta_pipeline.resources.meta_api import MetaAdsClient
    from meta_pipeline.schedules import FINAL_DAYS_TAG, attribution_window_schedule
    from meta_pipeline.settings import ExtractionSettings

    settings = ExtractionSettings(attribution_lookback_days=2)
    resources = {
        "meta": MetaAdsClient(access_token=TOKEN, graph_url=pipeline.sim.base_url),
        "settings": settings,
    }
    # A tick a few days back, so every day of the window is a partition already.
    tick = dt.datetime.combine(dt.date.today() - dt.timedelta(days=3), dt.time(11), dt.UTC)
    with dg.build_schedule_context(
        instance=pipeline.instance,
        scheduled_execution_time=tick,
        resources=resources,
        repository_def=defs.get_repository_def(),
    ) as context:
        data = attribution_window_schedule.evaluate_tick(context)
    requests = list(data.run_requests or [])
    assert len(requests) == len(pipeline.accounts), "one run per account"
    request = requests[0]

    result = dg.execute_job(
        ReconstructableRepository.for_module(
            "meta_pipeline.definitions", "defs", working_directory=str(ROOT)
        ).get_reconstructable_job(attribution_window_schedule.job_name),
        instance=pipeline.instance,
        tags=request.tags,
    )
    assert result.success
    account, first = request.tags[RANGE_START].split("|")
    last = request.tags[RANGE_END].split("|")[1]
    days = _days(3, back=(dt.date.today() - dt.date.fromisoformat(first)).days)
    assert days[-1].isoformat() == last
    for day in days:
        manifest = pipeline.store.read_manifest(INSIGHTS, f"{account}|{day.isoformat()}")
        assert manifest is not None and manifest.run_id == result.run_id
    # The tick's view of the window: its oldest day just left it.
    assert request.tags[FINAL_DAYS_TAG] == days[0].isoformat()
