"""``make demo``: the main job end to end on the simulator and a local GCS emulator.

Starts both services, registers the simulated ad accounts as partitions in a
local Dagster instance (``.demo/dagster_home``), materializes every asset for the
last days of every account through Dagster, and prints what was written where.

Everything it writes stays under the work folder (``.demo/``): the emulator keeps
its objects on disk (``.demo/gcs``), so a second run finds the partitions it
committed before and skips them, and ``make ui`` shows the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import dagster as dg
from google.cloud import storage

from meta_pipeline.gcs_emulator import running_gcs_emulator
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.pages import RequestStats

if TYPE_CHECKING:
    from meta_pipeline.simulator import Simulator

DEMO_BUCKET = "meta-demo"
DEMO_TOKEN = "demo-token"
DEMO_PROJECT = "meta-demo"
# Every run the demo starts carries this tag, so the next demo can tell its own
# interrupted runs from runs someone launched in the UI.
DEMO_TAG = "meta_pipeline/demo"
# The repository's instance settings (queued runs, per-account limits, run retries).
REPO_INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "dagster.yaml"
_UNFINISHED = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


@dataclass
class AssetSummary:
    partitions: int = 0
    records: int = 0
    stats: RequestStats = field(default_factory=RequestStats)

    def add(self, records: int, stats: RequestStats) -> None:
        self.partitions += 1
        self.records += records
        self.stats.logical_requests += stats.logical_requests
        self.stats.succeeded_requests += stats.succeeded_requests
        self.stats.retries += stats.retries
        self.stats.throttle_wait_seconds += stats.throttle_wait_seconds


@dataclass
class DemoWorld:
    """The simulator, the emulator and the instance, running, with the environment that uses them."""

    sim: Simulator
    gcs_url: str
    env: dict[str, str]
    dagster_home: Path
    gcs_dir: Path
    account_ids: list[str]
    world_changed: bool


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo_days(today: dt.date, days: int) -> list[dt.date]:
    """The ``days`` complete days before ``today``, oldest first."""
    return [today - dt.timedelta(days=n) for n in range(days, 0, -1)]


def _install_instance_config(dagster_home: Path) -> None:
    target = dagster_home / "dagster.yaml"
    if REPO_INSTANCE_CONFIG.is_file():
        # Refreshed every time: the repository's file is the one source of these settings.
        shutil.copyfile(REPO_INSTANCE_CONFIG, target)
    elif not target.exists():
        target.write_text("telemetry:\n  enabled: false\n")


def _record_world(workdir: Path, settings: dict[str, object]) -> bool:
    """Store the simulated world's settings; True when they differ from the last run's."""
    path = workdir / "world.json"
    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = None
    path.write_text(json.dumps(settings, sort_keys=True))
    return previous != settings


@contextmanager
def demo_world(
    workdir: Path,
    *,
    accounts: int = 3,
    seed: int = 42,
    scale: float = 1.0,
    profile: str = "realistic",
    today: dt.date | None = None,
) -> Iterator[DemoWorld]:
    """Start the simulator and the on-disk GCS emulator, register the accounts, set the env.

    The environment (``DAGSTER_HOME``, ``META_*``, ``GCS_*``, ``STORAGE_EMULATOR_HOST``)
    is set in this process for the block and given as ``world.env`` for subprocesses.
    Both services stop when the block exits, Ctrl-C included.
    """
    from meta_pipeline.accounts import add_accounts
    from meta_pipeline.simulator import SimulatorConfig, run_simulator

    workdir = workdir.resolve()
    dagster_home = workdir / "dagster_home"
    gcs_dir = workdir / "gcs"
    dagster_home.mkdir(parents=True, exist_ok=True)
    gcs_dir.mkdir(exist_ok=True)
    _install_instance_config(dagster_home)
    today = today or dt.date.today()
    changed = _record_world(
        workdir, {"seed": seed, "accounts": accounts, "scale": scale, "profile": profile}
    )
    config = SimulatorConfig(
        seed=seed, accounts=accounts, scale=scale, profile=profile, token=DEMO_TOKEN, today=today
    )
    with (
        run_simulator(config, host="127.0.0.1", port=0) as sim,
        running_gcs_emulator(bucket=DEMO_BUCKET, data_dir=str(gcs_dir)) as gcs_url,
    ):
        env = {
            "DAGSTER_HOME": str(dagster_home),
            "META_ACCESS_TOKEN": DEMO_TOKEN,
            "META_GRAPH_URL": sim.base_url,
            "GCS_BUCKET": DEMO_BUCKET,
            "GCS_PREFIX": "",
            "GCS_PROJECT": DEMO_PROJECT,
            "STORAGE_EMULATOR_HOST": gcs_url,
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
        account_ids = [a.id for a in sim.world.accounts]
        with _environment(env):
            with dg.DagsterInstance.get() as instance:
                add_accounts(instance, account_ids)
            yield DemoWorld(
                sim=sim,
                gcs_url=gcs_url,
                env=env,
                dagster_home=dagster_home,
                gcs_dir=gcs_dir,
                account_ids=account_ids,
                world_changed=changed,
            )


def run_demo(
    workdir: Path,
    *,
    accounts: int = 3,
    days: int = 7,
    seed: int = 42,
    scale: float = 1.0,
    profile: str = "realistic",
    refresh: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Materialize what is missing, print the summary; 0 when every partition is committed."""
    today = dt.date.today()
    print(
        f"meta_pipeline demo: starting the Graph API simulator and a GCS emulator ({workdir}/)",
        file=out,
        flush=True,
    )
    try:
        with demo_world(
            workdir, accounts=accounts, seed=seed, scale=scale, profile=profile, today=today
        ) as world:
            print(f"  simulator    {world.sim.base_url} ({profile} profile, seed {seed})", file=out)
            print(
                f"  GCS emulator {world.gcs_url} (bucket {DEMO_BUCKET}, on disk in {world.gcs_dir})",
                file=out,
            )
            print(f"  Dagster      DAGSTER_HOME={world.dagster_home}", file=out, flush=True)
            redo = refresh or world.world_changed
            return _materialize(world, today, days, redo, out)
    except KeyboardInterrupt:
        # Both services are stopped by now (the context managers ran); say what is kept.
        print(
            "\nInterrupted: the simulator and the GCS emulator are stopped. Committed "
            "partitions are kept; run `make demo` again to finish the rest.",
            file=out,
            flush=True,
        )
        return 130


def _close_interrupted_runs(instance: dg.DagsterInstance) -> int:
    """Mark runs an earlier, interrupted demo left "started" as failed (their slots freed)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=list(_UNFINISHED), tags={DEMO_TAG: "true"})
    )
    for run in runs:
        instance.report_run_failed(run, "the demo that started this run was interrupted")
    return len(runs)


@contextmanager
def _interrupt_seen() -> Iterator[Callable[[], bool]]:
    """A check for "SIGINT or SIGTERM arrived since the block began".

    Dagster swaps the SIGINT handler during a run and forgets a signal that lands
    after the last step; the wakeup fd records every signal whatever the handler.
    """
    if threading.current_thread() is not threading.main_thread():
        # Signals reach only the main thread; elsewhere there is nothing to watch.
        yield lambda: False
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    seen = False
    wanted = {int(signal.SIGINT), int(signal.SIGTERM)}

    def interrupted() -> bool:
        nonlocal seen
        with suppress(BlockingIOError):
            seen = seen or bool(wanted & set(os.read(read_fd, 1024)))
        return seen

    try:
        yield interrupted
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)


def _was_interrupted(result: dg.ExecuteInProcessResult) -> bool:
    if result.success:
        return False
    if result.dagster_run.tags.get("dagster/failure_reason") == "UNEXPECTED_TERMINATION":
        return True
    return any(
        event.is_step_failure
        and event.step_failure_data.error is not None
        and event.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        for event in result.all_events
    )


def _committed_partitions(
    instance: dg.DagsterInstance, store: PartitionStore, asset_keys: list[dg.AssetKey]
) -> set[str]:
    """Partition keys every asset has materialized in the instance *and* committed in GCS."""
    committed: set[str] | None = None
    for asset_key in asset_keys:
        materialized = set(instance.get_materialized_partitions(asset_key))
        stored = set(store.committed_partitions(asset_key))
        both = materialized & stored
        committed = both if committed is None else committed & both
    return committed or set()


def _materialize(world: DemoWorld, today: dt.date, days: int, redo: bool, out: TextIO) -> int:
    # Imported here: the definitions read their non-secret settings from the environment.
    from meta_pipeline.assets.insights import CAMPAIGN_SPEND_KEY, INSIGHTS_KEY
    from meta_pipeline.definitions import build_definitions
    from meta_pipeline.jobs import EXTRACTED_ASSET_KEYS, extract_job

    asset_keys = [*EXTRACTED_ASSET_KEYS, CAMPAIGN_SPEND_KEY]
    # Built now, not at import: the resources must see the demo's environment.
    defs = build_definitions()
    job = defs.resolve_job_def(extract_job.name)
    store = PartitionStore(storage.Client(project=DEMO_PROJECT), DEMO_BUCKET, "")
    keys = [f"{a}|{d.isoformat()}" for a in world.account_ids for d in demo_days(today, days)]
    with dg.DagsterInstance.get() as instance, _interrupt_seen() as interrupted:
        closed = _close_interrupted_runs(instance)
        done_before = set() if redo else _committed_partitions(instance, store, asset_keys)
        todo = [k for k in keys if k not in done_before]
        print(
            f"\n{len(world.account_ids)} simulated ad accounts x {days} days = {len(keys)} "
            f"partitions, every asset: {len(keys) - len(todo)} already committed, "
            f"{len(todo)} to materialize",
            file=out,
            flush=True,
        )
        if closed:
            print(f"  ({closed} run(s) of an interrupted demo marked failed)", file=out)
        started = time.monotonic()
        failed = 0
        for done, key in enumerate(todo, start=1):
            began = time.monotonic()
            result = job.execute_in_process(
                partition_key=key,
                instance=instance,
                raise_on_error=False,
                tags={DEMO_TAG: "true"},
                # The event log keeps every event; the console shows only what needs attention.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            if interrupted() or _was_interrupted(result):
                # Dagster turns Ctrl-C inside a run into a failed run and returns; the user
                # asked to stop, so stop here instead of starting the next partition.
                raise KeyboardInterrupt
            failed += 0 if result.success else 1
            elapsed = time.monotonic() - started
            left = (len(todo) - done) * elapsed / done
            status = "ok" if result.success else "FAILED (see the run in `make ui`)"
            print(
                f"  [{done:>3}/{len(todo)}] {key}  {status}  {time.monotonic() - began:.1f}s"
                f"  (~{left:.0f}s left)",
                file=out,
                flush=True,
            )
    _print_summary(store, asset_keys, keys, INSIGHTS_KEY, world, out)
    print(
        f"Finished in {time.monotonic() - started:.0f}s: {len(todo) - failed} partition(s) "
        f"materialized, {len(keys) - len(todo)} skipped (already committed), {failed} failed "
        f"partition run(s).\nSee it in the Dagster UI: make ui  (then http://127.0.0.1:3000)",
        file=out,
        flush=True,
    )
    return 1 if failed else 0


def _print_summary(
    store: PartitionStore,
    asset_keys: list[dg.AssetKey],
    keys: list[str],
    example_asset: dg.AssetKey,
    world: DemoWorld,
    out: TextIO,
) -> None:
    print("\nWhat is in the bucket for these partitions (per asset):", file=out)
    header = f"  {'asset':<27}{'partitions':>11}{'records':>9}{'requests':>9}{'retries':>8}{'throttle s':>11}{'accuracy':>9}"
    print(header, file=out)
    for asset_key in asset_keys:
        summary = AssetSummary()
        for partition_key in keys:
            manifest = store.read_manifest(asset_key, partition_key)
            if manifest is not None:
                summary.add(manifest.records, RequestStats.from_dict(manifest.request_stats))
        stats = summary.stats
        print(
            f"  {asset_key.to_user_string():<27}{summary.partitions:>11}{summary.records:>9}"
            f"{stats.logical_requests:>9}{stats.retries:>8}{stats.throttle_wait_seconds:>11.1f}"
            f"{stats.accuracy:>9.1%}",
            file=out,
        )
    example = store.location(example_asset, keys[-1]).manifest_uri
    print(
        f"\nData: one folder per asset and partition in gs://{store.bucket_name}/, e.g.\n"
        f"  {example}\n"
        f"  (the emulator keeps the bucket on disk in {world.gcs_dir}; it runs only while "
        f"the demo or `make ui` does)\n"
        f"Dagster instance (runs, materializations, checks): {world.dagster_home}",
        file=out,
    )
