"""A backfill of 3 accounts x 5 days through dagster-daemon on the production instance.

Real PostgreSQL (deploy/dagster.yaml unchanged), real ``dagster-daemon run`` with the queued run
coordinator and the one-run-per-account limit, runs launched by the daemon against the Graph API
simulator and the GCS emulator over HTTP.

The backfill is submitted the way the UI's "Launch backfill" does for a partitioned job: a
``PartitionBackfill`` on the job's partition set, stored in the instance, which the daemon's
backfill loop turns into one queued run per partition. (``dagster job backfill`` works too but
enqueues the runs itself and takes no run config.) The run config picks the in-process executor:
one process per run instead of one per step keeps 15 runs inside the test's time on 2 cores,
and what is under test is the scheduling of runs, not of steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import subprocess
import time
from collections import defaultdict
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
    expected_object_ids,
)
from meta_pipeline_tests.deployment.conftest import (
    ROOT,
    PostgresServer,
    write_production_home,
)

TOKEN = "deploy-secret-token-91b2e7"
DAGSTER_DAEMON = str(Path(DAGSTER_CLI).parent / "dagster-daemon")
ACCOUNT_TAG = "dagster/partition/account"
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
            lines.append(f"run {run.run_id} {run.tags.get('dagster/partition')}: {run.status}")
            for record in deployment.instance.all_logs(run.run_id):
                event = record.dagster_event
                if event is not None and event.is_failure:
                    lines.append(f"  {event.event_type_value}: {record.message[:800]}")
    lines.append(_timeline(deployment.instance, dg.RunsFilter(run_ids=[r.run_id for r in runs])))
    lines.append("daemon log tail:\n" + deployment.daemon_tail())
    return "\n".join(lines).replace(TOKEN, "<token>")


@pytest.mark.timeout(240)
def test_daemon_backfill_materializes_every_partition_one_run_per_account_at_a_time(
    deployment: Deployment,
) -> None:
    world = deployment.sim.world
    accounts = [a.id for a in world.accounts]
    assert len(accounts) == 3
    days = [dt.date.today() - dt.timedelta(days=age) for age in range(DAYS + 1, 1, -1)]
    # Day-major, as the UI lists a date range: the daemon creates runs in this order, so every
    # account has a queued run early and the accounts can start together.
    partitions = [f"{a}|{d.isoformat()}" for d in days for a in accounts]

    backfill_id = submit_job_backfill(
        deployment.instance,
        "meta_extract",
        partitions,
        run_config={"execution": {"config": {"in_process": {}}}},
    )
    backfill_filter = dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})

    instance = deployment.instance
    deadline = time.monotonic() + BACKFILL_DEADLINE_SECONDS
    while True:
        runs = list(instance.get_runs(filters=backfill_filter))
        covered = {r.tags.get("dagster/partition") for r in runs}
        # A run retry (run_retries) would add runs of a partition: wait for every run, then
        # require them all to have succeeded.
        if covered >= set(partitions) and all(r.is_finished for r in runs):
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"backfill unfinished after {BACKFILL_DEADLINE_SECONDS}s:\n"
                + _timeline(instance, backfill_filter)
                + "\n"
                + deployment.daemon_tail()
            )
        time.sleep(1)

    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), _failure_report(
        deployment, runs
    )
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None and backfill.error is None
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(partitions), (
        "one run per partition, none retried"
    )
    for run in runs:
        account, _ = run.tags["dagster/partition"].split("|")
        # The tag the per-account limit keys on: without it the limit would not apply.
        assert run.tags[ACCOUNT_TAG] == account
        # Submitted to the queued coordinator (so the daemon's limits applied), not launched.
        enqueued = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED)
        assert enqueued, f"run {run.run_id} never went through the queue"

    # Every asset partition materialized, as the instance (PostgreSQL) records it.
    for asset in [*EXTRACTED, "daily_campaign_spend"]:
        materialized = instance.get_materialized_partitions(dg.AssetKey(["meta", asset]))
        assert set(partitions) <= set(materialized), asset

    # No two runs of the same account overlapped in time; different accounts did run at once.
    records = instance.get_run_records(filters=backfill_filter)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        assert record.start_time is not None and record.end_time is not None
        spans[record.dagster_run.tags[ACCOUNT_TAG]].append((record.start_time, record.end_time))
    assert sorted(spans) == sorted(accounts)
    for account, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end, f"two runs of {account} overlapped: {intervals}"
    every = sorted((start, end, account) for account, ivs in spans.items() for start, end in ivs)
    assert any(
        b_start < a_end and a_acc != b_acc
        for i, (_, a_end, a_acc) in enumerate(every)
        for b_start, _, b_acc in every[i + 1 :]
    ), "accounts never ran in parallel: the limit should be per account, not global"

    # What landed in GCS equals what the simulator serves: every partition's insights and ads.
    insights = dg.AssetKey(["meta", "insights"])
    for account in accounts:
        for day in days:
            partition = f"{account}|{day.isoformat()}"
            manifest = deployment.store.read_manifest(insights, partition)
            assert manifest is not None, partition
            rows = list(deployment.store.iter_records(insights, partition))
            keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
            assert len(keys) == len(set(keys)), partition
            assert set(keys) == expected_insight_keys(deployment.sim, account, day), partition
            ads = {str(r["id"]) for r in deployment.store.iter_records(["meta", "ads"], partition)}
            assert ads == expected_object_ids(deployment.sim, account, "ads", day), partition
    assert any(expected_insight_keys(deployment.sim, a, d) for a in accounts for d in days), (
        "the sample is not empty"
    )


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
