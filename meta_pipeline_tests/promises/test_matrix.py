"""Rows 18, 27, 28 and 29 of the reliability matrix, end to end.

18: two runs of one partition at once (the queue's per-account limit; forced anyway,
    one loses cleanly and the partition is never a mix).
27: a step retry mid-extraction resumes from the checkpoint; counters counted once.
28: the run worker SIGKILLed; re-execution from failure resumes from the checkpoint.
29: a run cancelled (SIGTERM, as the run launcher's terminate sends) stops; its
    checkpoint stays consistent and a re-execution completes the partition.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from meta_pipeline.assets.insights import insights_assets
from meta_pipeline.assets.objects import object_assets
from meta_pipeline.config import build_resources
from meta_pipeline.io_managers.checkpoints import CHECKPOINT_KEY
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator
from meta_pipeline_tests.assets.conftest import ROOT, expected_insight_keys
from meta_pipeline_tests.promises.harness import (
    INSIGHTS,
    Example,
    KillPoint,
    SimulatorSpy,
    base_env,
    example,
    readable_tail,
    wait_ok,
)

TOKEN = "matrix-token-8e21f0c4a9"


@dataclass
class World:
    sim: Simulator
    spy: SimulatorSpy
    env: dict[str, str]
    workdir: Path

    @property
    def account(self) -> str:
        [account] = [a.id for a in self.sim.world.accounts]
        return account

    def partition(self, age: int) -> tuple[str, set[tuple[str, str]]]:
        day = dt.date.today() - dt.timedelta(days=age)
        return f"{self.account}|{day.isoformat()}", expected_insight_keys(
            self.sim, self.account, day
        )


@pytest.fixture(scope="module")
def world(promises_gcs_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    config = SimulatorConfig(
        seed=5, accounts=1, scale=2.0, profile="clean", token=TOKEN, today=dt.date.today()
    )
    with run_simulator(config, host="127.0.0.1", port=0) as sim:
        spy = SimulatorSpy(sim)
        env = base_env(sim, promises_gcs_url, TOKEN)
        yield World(sim, spy, env, tmp_path_factory.mktemp("matrix"))


def _assert_equals_source(ex: Example, expected: set[tuple[str, str]], log: Path) -> None:
    keys = ex.committed_keys()
    assert len(keys) == len(set(keys)), f"duplicates\n{readable_tail(log)}"
    assert set(keys) == expected, f"lost rows\n{readable_tail(log)}"


def _wait_checkpoints(ex: Example, count: int, child: object, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(ex.checkpoints()) < count:
        assert getattr(child, "poll", lambda: None)() is None, "the run ended too early"
        assert time.monotonic() < deadline, f"no {count} checkpoints in time"
        time.sleep(0.02)


# ---------------------------------------------------------------- row 18


def test_row18_the_queue_allows_one_run_per_account(tmp_path: Path) -> None:
    """The deployed dagster.yaml queues runs and limits each account to one at a time."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "AccountTaggingRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        account_limits = [limit for limit in limits if limit["key"] == "meta_pipeline/account"]
        assert account_limits == [
            {
                "key": "meta_pipeline/account",
                "value": {"applyLimitPerUniqueValue": True},
                "limit": 1,
            }
        ]


@pytest.mark.timeout(600)
def test_row18_forced_concurrent_runs_of_one_partition_one_loses_cleanly(world: World) -> None:
    """Bypassing the queue (two CLI runs), the partition is one run's, whole, never a mix.

    The interleaving is forced: B writes and checkpoints, is stopped (SIGSTOP), A runs
    and commits (removing B's unlisted objects), then B continues to its own commit.
    """
    partition, expected = world.partition(4)
    with example(world.sim, world.spy, world.env, world.workdir, partition) as ex:
        log_a, log_b = ex.home / "a.log", ex.home / "b.log"
        b = ex.start_materialize(log_b)
        _wait_checkpoints(ex, 2, b)
        os.killpg(b.pid, signal.SIGSTOP)
        try:
            a = ex.start_materialize(log_a)
            wait_ok(a, log_a)
            manifest_a = ex.store.read_manifest(INSIGHTS, partition)
            assert manifest_a is not None
        finally:
            os.killpg(b.pid, signal.SIGCONT)
        b.wait(timeout=300)
        manifest = ex.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None
        # A's commit removed B's checkpointed objects, so B loses: A's version stands,
        # untouched, and B says why. (Before the fix B published a manifest with holes.)
        assert b.returncode != 0, readable_tail(log_b)
        assert manifest.attempt_id == manifest_a.attempt_id
        assert "concurrent materialization" in log_b.read_text(), readable_tail(log_b)
        # Every listed object is there and belongs to one attempt.
        assert {o.path.split("/")[0] for o in manifest.objects} == {
            f"attempt={manifest.attempt_id}"
        }
        _assert_equals_source(ex, expected, log_b)


# ---------------------------------------------------------------- row 27


@pytest.mark.timeout(600)
def test_row27_step_retry_mid_extraction_resumes_and_counts_once(world: World) -> None:
    """A step failing mid-partition is retried by its RetryPolicy and resumes.

    The product's jobs wait 60 s (full jitter) before a step retry; this job has the same
    assets and resources with no delay, so the test does not sleep for a minute. Its
    client makes one attempt per request, so one injected 503 escapes the client (as a
    run of transient errors longer than the client's budget would) and fails the step.
    Permanent errors are not retried by design (``assets.common.permanent_failure``).
    """
    partition, expected = world.partition(5)
    job = dg.define_asset_job(
        "insights_with_step_retry",
        selection=dg.AssetSelection.assets(INSIGHTS),
        op_retry_policy=dg.RetryPolicy(max_retries=2, delay=0),
    )
    with example(world.sim, world.spy, world.env, world.workdir, partition) as ex:
        saved = dict(os.environ)
        os.environ.update(ex.env)
        try:
            resources = build_resources()
            resources["meta"] = MetaAdsClient(
                access_token=dg.EnvVar("META_ACCESS_TOKEN"),
                graph_url=world.sim.base_url,
                page_size=10,
                async_poll_interval_seconds=0.1,
                max_attempts=1,
            )
            defs = dg.Definitions(
                assets=[*object_assets, *insights_assets], jobs=[job], resources=resources
            )
            job_def = defs.resolve_job_def("insights_with_step_retry")
            clean = job_def.execute_in_process(partition_key=partition, instance=ex.instance)
            assert clean.success
            baseline = ex.store.read_manifest(INSIGHTS, partition)
            assert baseline is not None and not baseline.resumed

            outcome: dict[str, dg.ExecuteInProcessResult] = {}

            def run() -> None:
                outcome["result"] = job_def.execute_in_process(
                    partition_key=partition, instance=ex.instance, raise_on_error=False
                )

            before = len(ex.checkpoints())
            worker = threading.Thread(target=run)
            worker.start()
            deadline = time.monotonic() + 240
            with dg.DagsterInstance.from_config(str(ex.home)) as watcher:
                while _count_checkpoints(watcher, partition) < before + 2:
                    assert worker.is_alive(), "the run ended before two checkpoints"
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            # The next results page fails: the step fails, the RetryPolicy retries it.
            world.sim.inject("http_503", 1, "/insights")
            worker.join(timeout=300)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            world.sim.clear_faults()
        result = outcome["result"]
        assert result.success
        events = [e.event_type_value for e in result.all_events]
        assert "STEP_UP_FOR_RETRY" in events and "STEP_RESTARTED" in events
        manifest = ex.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.resumed
        keys = ex.committed_keys()
        assert len(keys) == len(set(keys))
        assert set(keys) == expected
        # Counted once: the same pages and requests as the clean run, give or take the
        # re-attach to the report (its status read) and the refused page.
        assert manifest.pages == baseline.pages
        assert manifest.records == baseline.records
        clean_ok = baseline.request_stats["succeeded_requests"]
        retry_ok = manifest.request_stats["succeeded_requests"]
        assert clean_ok <= retry_ok <= clean_ok + 2, (clean_ok, retry_ok)


def _count_checkpoints(instance: dg.DagsterInstance, partition: str) -> int:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=INSIGHTS, asset_partitions=[partition]), limit=200
    ).records
    return sum(
        1
        for r in records
        if r.asset_observation is not None and CHECKPOINT_KEY in r.asset_observation.metadata
    )


# ---------------------------------------------------------------- row 28


@pytest.mark.timeout(600)
def test_row28_run_worker_killed_reexecution_resumes_from_the_checkpoint(
    world: World,
) -> None:
    partition, expected = world.partition(6)
    with example(world.sim, world.spy, world.env, world.workdir, partition) as ex:
        log = ex.home / "run.log"
        child = ex.start_materialize(log)
        assert ex.kill_at(child, KillPoint(checkpoints=3, how="now"), timeout=240)
        killed = ex.end_phase(killed=True)
        assert killed.checkpoint_records_at_end >= 30
        assert ex.store.read_manifest(INSIGHTS, partition) is None
        assert killed.run_id is not None
        run = ex.instance.get_run_by_id(killed.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE

        wait_ok(ex.start_resume(killed.run_id, log), log)
        resumed = ex.end_phase(killed=False)
        manifest = ex.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.resumed
        assert manifest.resumed_from_objects >= 3
        _assert_equals_source(ex, expected, log)
        # Rows already durable in the killed run's checkpoint were not fetched again.
        durable_then_refetched = set(resumed.served) & set(killed.served)
        assert len(durable_then_refetched) <= len(killed.served) - 30


@pytest.mark.timeout(600)
def test_row15_killed_after_its_commit_the_reexecution_fetches_nothing_again(
    world: World,
) -> None:
    """Killed during the asset checks, after the commit: re-execution re-commits.

    Bounded rework at the last instant of a step: the stream was complete and committed,
    so the re-execution from failure fetches no page again (it used to fetch the whole
    partition anew, found by the kill-anywhere soak).
    """
    partition, expected = world.partition(3)
    with example(world.sim, world.spy, world.env, world.workdir, partition) as ex:
        log = ex.home / "run.log"
        # Hold the reconciliation check's account query (the only sync insights call).
        ex.spy.held.clear()
        ex.spy.hold_kinds = frozenset({"insights"})
        ex.spy.hold_seconds = 20.0
        try:
            child = ex.start_materialize(log)
            deadline = time.monotonic() + 240
            while not ex.spy.held.wait(0.05):
                assert child.poll() is None, readable_tail(log)
                assert time.monotonic() < deadline, "the checks never ran"
            committed = ex.store.read_manifest(INSIGHTS, partition)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
        finally:
            ex.spy.hold_seconds = 0.0
            ex.spy.hold_kinds = None
        assert committed is not None, "the commit comes before the checks"
        killed = ex.end_phase(killed=True)
        assert killed.run_id is not None and killed.complete_at_end

        wait_ok(ex.start_resume(killed.run_id, log), log)
        resumed = ex.end_phase(killed=False)
        assert sum(resumed.served.values()) == 0, "no insights page fetched again"
        manifest = ex.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.attempt_id == committed.attempt_id
        assert "committing it again" in log.read_text()
        _assert_equals_source(ex, expected, log)


# ---------------------------------------------------------------- row 29


@pytest.mark.timeout(600)
def test_row29_cancelled_run_stops_with_a_consistent_checkpoint(world: World) -> None:
    partition, expected = world.partition(7)
    with example(world.sim, world.spy, world.env, world.workdir, partition) as ex:
        log = ex.home / "run.log"
        world.sim.config.latency_ms = 100.0  # slow pages: the run is mid-partition when told
        try:
            child = ex.start_materialize(log)
            _wait_checkpoints(ex, 2, child)
            os.killpg(child.pid, signal.SIGTERM)
            code = child.wait(timeout=120)
        finally:
            world.sim.config.latency_ms = 0.0
        assert code != 0
        run = ex.latest_run()
        assert run is not None
        assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE), run.status
        requests_after_stop = world.sim.stats()["requests_total"]
        time.sleep(1.0)
        assert world.sim.stats()["requests_total"] == requests_after_stop, "it kept calling"
        assert ex.store.read_manifest(INSIGHTS, partition) is None

        # The last checkpoint lists only objects that exist with the bytes it recorded.
        [latest, *_] = ex.checkpoints()
        location = ex.store.location(INSIGHTS, partition)
        from meta_pipeline.io_managers.manifest import StoredObject

        listed = [StoredObject.from_dict(o) for o in latest["objects"]]
        assert listed, "the run checkpointed before it was cancelled"
        assert all(ex.store.object_matches(location, o) for o in listed)

        ex.spy.take()
        wait_ok(ex.start_resume(run.run_id, log), log)
        manifest = ex.store.read_manifest(INSIGHTS, partition)
        assert manifest is not None and manifest.resumed
        _assert_equals_source(ex, expected, log)
