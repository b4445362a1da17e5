"""A backfill of 3 accounts x 5 days through dagster-daemon on the production instance.

Real PostgreSQL (deploy/dagster.yaml unchanged: pooled storage, the account-tagging queue and
the one-run-per-account limit), real ``dagster-daemon run``, runs launched by the daemon against
the Graph API simulator and the GCS emulator over HTTP.

The backfill is submitted the way the UI does, on the asset graph or on the ``meta_extract``
job's partition set: a ``PartitionBackfill`` stored in the instance, which the daemon's backfill
loop turns into one queued range run per account (the assets' single-run backfill policy). The
run config picks the in-process executor (one process per run instead of one per step, on 2
cores): what is under test is the scheduling of runs, not of steps."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from google.cloud import storage

from meta_pipeline.gcs_emulator import running_gcs_emulator
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME
from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator
from meta_pipeline_tests.assets.conftest import (
    DAGSTER_CLI,
    expected_insight_keys,
)
from meta_pipeline_tests.deployment.conftest import (
    ROOT,
    PostgresServer,
    write_production_home,
)

TOKEN = "deploy-secret-token-91b2e7"
DAGSTER_DAEMON = str(Path(DAGSTER_CLI).parent / "dagster-daemon")
ACCOUNT_TAG = "meta_pipeline/account"
BACKFILL_TAG = "dagster/backfill"
CODE_LOCATION = "meta_pipeline.definitions"
POOL = "meta_api"
EXTRACTED = ["ad_accounts", "campaigns", "adsets", "ads", "adcreatives", "insights"]
DAYS = 5
# Bounded wait for the whole backfill, 40 s under the test's timeout (setup, submission, checks)
# so that a stall reports the runs' timeline. The test takes about 100 s of CPU (5 runs in series
# per account, each a fresh run worker process); on this 2-core machine shared with other heavy
# jobs (load 7 to 11) the backfill took 195 to 250 s.
BACKFILL_DEADLINE_SECONDS = 200


@dataclass
class Deployment:
    sim: Simulator
    env: dict[str, str]
    home: Path
    store: PartitionStore
    instance: dg.DagsterInstance
    daemon_log: Path

    def daemon_tail(self) -> str:
        text = self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""
        return text[-4000:].replace(TOKEN, "<token>")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the daemon's process group (daemon, code server, run workers), then SIGKILL."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers in the group
    if process.poll() is None:
        process.wait(timeout=10)


@pytest.fixture
def deployment(
    tmp_path: Path,
    postgres: PostgresServer,
    pg_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    config = SimulatorConfig(
        seed=13, accounts=3, scale=0.1, profile="clean", token=TOKEN, today=dt.date.today()
    )
    home = write_production_home(tmp_path / "dagster_home")
    bucket = f"deploy-{os.getpid()}"
    with running_gcs_emulator() as gcs_url, run_simulator(config, port=0) as sim:
        env = {
            **os.environ,
            **postgres.env(pg_database),
            "DAGSTER_HOME": str(home),
            "META_ACCESS_TOKEN": TOKEN,
            "META_GRAPH_URL": sim.base_url,
            "META_ASYNC_POLL_SECONDS": "0.2",
            "META_START_DATE": (dt.date.today() - dt.timedelta(days=30)).isoformat(),
            "GCS_BUCKET": bucket,
            "GCS_PREFIX": "",
            "GCS_PROJECT": "meta-deploy",
            "STORAGE_EMULATOR_HOST": gcs_url,
        }
        for name, value in env.items():
            if os.environ.get(name) != value:
                monkeypatch.setenv(name, value)
        client = storage.Client(project="meta-deploy")
        client.create_bucket(bucket)
        store = PartitionStore(client, bucket, "")
        daemon_log = tmp_path / "daemon.log"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(
                ACCOUNTS_PARTITIONS_NAME, [a.id for a in sim.world.accounts]
            )
            # The deploy step from deploy/README.md: the pool's limit set once, explicitly.
            # Left to the first runs, two of them starting together race to create it and one
            # fails on PostgreSQL (Dagster 1.13's initialize_concurrency_limit_to_default).
            limit = instance.get_concurrency_config().pool_config.default_pool_limit
            pool = subprocess.run(
                [DAGSTER_CLI, "instance", "concurrency", "set", POOL, str(limit)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert pool.returncode == 0, pool.stdout + pool.stderr
            with daemon_log.open("wb") as out:
                daemon = subprocess.Popen(
                    [DAGSTER_DAEMON, "run", "-m", "meta_pipeline.definitions"],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: teardown kills the tree
                )
            try:
                yield Deployment(sim, env, home, store, instance, daemon_log)
            finally:
                _stop(daemon)


def _timeline(instance: dg.DagsterInstance, runs_filter: dg.RunsFilter) -> str:
    """Each run's partition, status and times (seconds after the first run was created)."""
    records = instance.get_run_records(filters=runs_filter)
    if not records:
        return "no runs"
    origin = min(r.create_timestamp.timestamp() for r in records)

    def since(value: float | None) -> str:
        return "-" if value is None else f"{value - origin:6.1f}"

    rows = sorted(
        (
            r.dagster_run.tags.get("dagster/partition", "?"),
            r.dagster_run.status.value,
            since(r.create_timestamp.timestamp()),
            since(r.start_time),
            since(r.end_time),
        )
        for r in records
    )
    return "\n".join("  ".join(row) for row in rows)


def _failure_report(deployment: Deployment, runs: list[dg.DagsterRun]) -> str:
    lines = []
    for run in runs:
        if run.status != dg.DagsterRunStatus.SUCCESS:
            partition = run.tags.get("dagster/partition") or run.tags.get(RANGE_START_TAG)
            lines.append(f"run {run.run_id} {partition}: {run.status}")
            for record in deployment.instance.all_logs(run.run_id):
                event = record.dagster_event
                if event is not None and event.is_failure:
                    lines.append(f"  {event.event_type_value}: {record.message[:800]}")
                    error = getattr(event.event_specific_data, "error", None)
                    while error is not None:  # the root cause is the last link of the chain
                        lines.append(f"    {error.message.strip()[:800]}")
                        error = error.cause
    lines.append(_timeline(deployment.instance, dg.RunsFilter(run_ids=[r.run_id for r in runs])))
    lines.append("daemon log tail:\n" + deployment.daemon_tail())
    return "\n".join(lines).replace(TOKEN, "<token>")


def submit_job_backfill(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_names: list[str],
    run_config: dict[str, Any],
) -> str:
    """Store a backfill of ``job_name`` for the daemon, as the UI's launch mutation does."""
    with WorkspaceProcessContext(
        instance,
        ModuleTarget(
            module_name=CODE_LOCATION,
            attribute=None,
            working_directory=str(ROOT),
            location_name=None,  # named after the module, as `dagster-daemon run -m` names it
        ),
    ) as process_context:
        location = process_context.create_request_context().get_code_location(CODE_LOCATION)
        [repository_name] = location.get_repository_names()
        repository = location.get_repository(repository_name)
        [partition_set] = [s for s in repository.get_partition_sets() if s.job_name == job_name]
        backfill_id = make_new_backfill_id()
        instance.add_backfill(
            PartitionBackfill(
                backfill_id=backfill_id,
                partition_set_origin=partition_set.get_remote_origin(),
                status=BulkActionStatus.REQUESTED,
                partition_names=partition_names,
                from_failure=False,
                reexecution_steps=None,
                tags={},
                backfill_timestamp=time.time(),
                run_config=run_config,
            )
        )
    return backfill_id


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def submit_asset_backfill(
    instance: dg.DagsterInstance, partition_names: list[str], run_config: dict[str, Any]
) -> str:
    """Store a backfill of every asset, as the UI's "Materialize" on the asset graph does."""
    from meta_pipeline.definitions import defs

    asset_graph = defs.resolve_asset_graph()
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id,
            asset_graph=asset_graph,
            partition_names=partition_names,
            asset_selection=[
                key for key in asset_graph.materializable_asset_keys if key.path[0] == "meta"
            ],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=run_config,
        )
    )
    return backfill_id


@pytest.mark.timeout(240)
def test_backfill_runs_each_accounts_days_in_one_run_one_run_per_account_at_a_time(
    deployment: Deployment,
) -> None:
    """The backfill policy batches an account's days into one run. The queue still sees each
    run's account (AccountTaggingRunCoordinator), accounts run side by side, and each day is its
    own committed partition."""
    instance = deployment.instance
    accounts = [a.id for a in deployment.sim.world.accounts]
    assert len(accounts) == 3
    days = [dt.date.today() - dt.timedelta(days=age) for age in range(DAYS + 1, 1, -1)]
    # Day-major, as the UI lists a date range.
    partitions = [f"{a}|{d.isoformat()}" for d in days for a in accounts]
    assert len(days) > len(accounts), "Dagster groups a backfill by the dimension with fewer keys"

    # The in-process executor: one process per run instead of one per step (2 cores).
    run_config = {"execution": {"config": {"in_process": {}}}}
    backfill_id = submit_asset_backfill(instance, partitions, run_config)
    backfill_filter = dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})
    deadline = time.monotonic() + BACKFILL_DEADLINE_SECONDS
    while True:
        backfill = instance.get_backfill(backfill_id)
        runs = list(instance.get_runs(filters=backfill_filter))
        done = backfill is not None and backfill.status != BulkActionStatus.REQUESTED
        if done and all(r.is_finished for r in runs):
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"asset backfill unfinished after {BACKFILL_DEADLINE_SECONDS}s:\n"
                + _timeline(instance, backfill_filter)
                + "\n"
                + deployment.daemon_tail()
            )
        time.sleep(1)

    assert backfill is not None and backfill.status == BulkActionStatus.COMPLETED_SUCCESS, (
        _failure_report(deployment, runs)
    )
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), _failure_report(
        deployment, runs
    )
    # One run per account, covering all its days, and tagged with it for the queue's limit.
    assert len(runs) == len(accounts), _timeline(instance, backfill_filter)
    for run in runs:
        account = run.tags[ACCOUNT_TAG]
        assert run.tags[RANGE_START_TAG] == f"{account}|{days[0].isoformat()}"
        assert run.tags[RANGE_END_TAG] == f"{account}|{days[-1].isoformat()}"
        assert instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
    assert sorted(r.tags[ACCOUNT_TAG] for r in runs) == sorted(accounts)
    # Different accounts ran at once (the limit is per account, not global).
    records = instance.get_run_records(filters=backfill_filter)
    spans = sorted(
        (r.start_time or 0.0, r.end_time or 0.0, r.dagster_run.tags[ACCOUNT_TAG]) for r in records
    )
    assert any(b_start < a_end for (_, a_end, _), (b_start, _, _) in itertools.pairwise(spans)), (
        f"accounts never ran in parallel: {spans}"
    )

    for asset in [*EXTRACTED, "daily_campaign_spend"]:
        materialized = instance.get_materialized_partitions(dg.AssetKey(["meta", asset]))
        assert set(partitions) <= set(materialized), asset
    insights = dg.AssetKey(["meta", "insights"])
    run_of_account = {r.tags[ACCOUNT_TAG]: r.run_id for r in runs}
    for account in accounts:
        for day in days:
            partition = f"{account}|{day.isoformat()}"
            manifest = deployment.store.read_manifest(insights, partition)
            assert manifest is not None and manifest.run_id == run_of_account[account]
            keys = [
                (str(r["ad_id"]), str(r["date_start"]))
                for r in deployment.store.iter_records(insights, partition)
            ]
            assert len(keys) == len(set(keys)), partition
            assert set(keys) == expected_insight_keys(deployment.sim, account, day), partition


@pytest.mark.timeout(240)
def test_a_job_page_backfill_fails_clearly_instead_of_redoing_one_partition(
    deployment: Deployment,
) -> None:
    """Dagster 1.13 gives a job backfill's range runs the first partition's dimension tags,
    which win over the range: every run would quietly materialize that one partition. The
    assets refuse such a run before any request or write, naming the tags and the way out."""
    instance = deployment.instance
    accounts = [a.id for a in deployment.sim.world.accounts]
    days = [dt.date.today() - dt.timedelta(days=age) for age in range(DAYS + 1, 1, -1)]
    partitions = [f"{a}|{d.isoformat()}" for d in days for a in accounts]
    run_config = {"execution": {"config": {"in_process": {}}}}
    backfill_id = submit_job_backfill(instance, "meta_extract", partitions, run_config)
    backfill_filter = dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})
    deadline = time.monotonic() + BACKFILL_DEADLINE_SECONDS
    while True:
        runs = list(instance.get_runs(filters=backfill_filter))
        backfill = instance.get_backfill(backfill_id)
        done = backfill is not None and backfill.status != BulkActionStatus.REQUESTED
        if done and runs and all(r.is_finished for r in runs):
            break
        assert time.monotonic() < deadline, _timeline(instance, backfill_filter)
        time.sleep(1)

    assert runs and all(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    report = _failure_report(deployment, runs)
    assert "launch the backfill from the asset graph" in report, report
    # Refused before anything was fetched or stored.
    assert deployment.sim.stats()["requests_total"] == 0
    assert not list(deployment.store.committed_partitions(dg.AssetKey(["meta", "insights"])))
