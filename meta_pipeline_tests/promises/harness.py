"""Kill-and-resume machinery shared by the promise tests.

Everything runs for real: the ``dagster`` CLI in its own process group (SIGKILLed as a
whole), re-execution from failure in a process of its own (so it can be killed too),
the simulator and the GCS emulator over HTTP. The only instrumentation is a spy on the
in-process simulator that records which insights rows it served and can hold a request
(latency) so a kill lands mid-request.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.execution.stats import StepEventStatus
from google.cloud import storage

from meta_pipeline.io_managers.checkpoints import CHECKPOINT_KEY
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME
from meta_pipeline.simulator import Simulator
from meta_pipeline_tests.assets.conftest import DAGSTER_CLI, ROOT

INSIGHTS = dg.AssetKey(["meta", "insights"])
PYTHON = sys.executable
_buckets = itertools.count()

Key = tuple[str, str]


# Calls whose answer may carry insights rows (a batch can hold a report page).
_ROW_CALLS = frozenset({"report_insights", "batch"})


class SimulatorSpy:
    """Counts the insights rows the simulator really served; holds requests on demand.

    Rows count for the process that asked for them: a request held (or just slow) when its
    process is SIGKILLed is still answered by the simulator, and :meth:`take` waits for that
    answer instead of leaving its rows to whichever process runs when it comes (issue 9).
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        self._in_flight = 0  # row-carrying requests received and not yet answered
        self._served: list[Key] = []
        self.hold_seconds = 0.0
        self.hold_kinds: frozenset[str] | None = None  # hold only these calls (None: any)
        self.held = threading.Event()
        self._current_kind = ""
        dispatch = sim._dispatch
        latency = sim._latency_seconds
        applicable = sim._applicable_faults

        def spy_applicable(call: Any) -> frozenset[str]:
            # Called for each request right before its latency: remember what it is.
            self._current_kind = call.kind
            return frozenset(applicable(call))

        def spy_dispatch(call: Any) -> Any:
            answer = dispatch(call)
            # call.fault is set for faults that mangle the answer after dispatch
            # (truncated, HTML, empty page): the client never gets those rows.
            if call.kind == "report_insights" and call.fault is None and answer.status == 200:
                rows = answer.body.get("data", []) if isinstance(answer.body, dict) else []
                with self._lock:
                    self._served.extend(
                        (str(r["ad_id"]), str(r["date_start"])) for r in rows if "ad_id" in r
                    )
            return answer

        def spy_latency() -> float:
            # Called once per request, in its handler's task, before the only await
            # (latency) between receiving it and answering it.
            if self._current_kind in _ROW_CALLS:
                self._track(asyncio.current_task())
            kinds = self.hold_kinds
            if self.hold_seconds and (kinds is None or self._current_kind in kinds):
                self.held.set()
                return self.hold_seconds
            return float(latency())

        sim._dispatch = spy_dispatch  # type: ignore[method-assign]
        sim._latency_seconds = spy_latency  # type: ignore[method-assign]
        sim._applicable_faults = spy_applicable  # type: ignore[method-assign]

    def _track(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            return
        with self._answered:
            self._in_flight += 1
        # The handler's task ends once the answer is built (rows counted), whichever way.
        task.add_done_callback(self._done)

    def _done(self, _task: asyncio.Task[Any]) -> None:
        with self._answered:
            self._in_flight -= 1
            self._answered.notify_all()

    def take(self, timeout: float = 60.0) -> Counter[Key]:
        """Rows served since the last call, once every request received so far is answered.

        Between phases no process is asking: what is still in flight was sent by the
        process that just ended (or was killed), so its rows belong to that phase.
        """
        with self._answered:
            if not self._answered.wait_for(lambda: self._in_flight == 0, timeout):
                raise AssertionError(f"{self._in_flight} insights request(s) unanswered")
            served = Counter(self._served)
            self._served.clear()
        return served


@dataclass(frozen=True)
class KillPoint:
    """When to SIGKILL: after ``checkpoints`` checkpoints, then ``how``.

    how: ``now``; ``mid_request`` (while the simulator holds the next Graph request);
    ``commit`` (as soon as the stream's final checkpoint is logged: during the commit);
    ``delay`` (``delay_ms`` later: anywhere, an upload included).
    """

    checkpoints: int
    how: str
    delay_ms: int = 0


@dataclass
class Phase:
    """One process (the first run or a resume) and what it cost."""

    run_id: str | None
    killed: bool
    served: Counter[Key]
    checkpoint_records_at_end: int
    complete_at_end: bool
    # Killed after every step of its run had succeeded (run end or process teardown):
    # the partition is committed and checked, and re-execution from failure has nothing to do.
    steps_done: bool = False


@dataclass
class Example:
    """One partition in its own DAGSTER_HOME and bucket, sharing the simulator."""

    sim: Simulator
    spy: SimulatorSpy
    env: dict[str, str]
    home: Path
    store: PartitionStore
    instance: dg.DagsterInstance
    partition: str
    phases: list[Phase] = field(default_factory=list)

    # -- processes -------------------------------------------------------------------

    def _popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                args,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes the whole tree
            )

    def start_materialize(
        self, log: Path, select: str = "meta/insights"
    ) -> subprocess.Popen[bytes]:
        args = [DAGSTER_CLI, "asset", "materialize", "-m", "meta_pipeline.definitions"]
        args += ["--select", select, "--partition", self.partition]
        # The step runs in the CLI's own process: one process group, one kill.
        args += ["--config-json", '{"execution": {"config": {"in_process": {}}}}']
        return self._popen(args, log)

    def start_resume(self, run_id: str, log: Path) -> subprocess.Popen[bytes]:
        return self._popen([PYTHON, "-m", "meta_pipeline_tests.promises.resume", run_id], log)

    # -- observation -----------------------------------------------------------------

    def checkpoints(self) -> list[dict[str, Any]]:
        """Checkpoints logged for the partition, newest first."""
        records = self.instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=INSIGHTS, asset_partitions=[self.partition]),
            limit=200,
        ).records
        out = []
        for record in records:
            observation = record.asset_observation
            if observation is None or CHECKPOINT_KEY not in observation.metadata:
                continue
            out.append(observation.metadata[CHECKPOINT_KEY].value)
        return out

    def latest_run(self) -> dg.DagsterRun | None:
        runs = self.instance.get_runs(limit=1)
        return runs[0] if runs else None

    def kill_at(self, child: subprocess.Popen[bytes], point: KillPoint, timeout: float) -> bool:
        """Wait for the kill point and SIGKILL the process group; False if it ended first."""
        before = len(self.checkpoints())
        deadline = time.monotonic() + timeout
        try:
            while True:
                if child.poll() is not None:
                    return False
                now = self.checkpoints()
                new = len(now) - before
                if point.how == "commit":
                    if now and now[0].get("complete") and new > 0:
                        break
                elif new >= point.checkpoints:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"kill point {point} not reached in {timeout}s")
                time.sleep(0.02)
            if point.how == "mid_request":
                self.spy.held.clear()
                self.spy.hold_seconds = 3.0
                while not self.spy.held.wait(0.05):
                    if child.poll() is not None:
                        return False
            elif point.how == "delay":
                time.sleep(point.delay_ms / 1000)
            if child.poll() is not None:
                return False
            os.killpg(child.pid, signal.SIGKILL)
            return True
        finally:
            self.spy.hold_seconds = 0.0
            if child.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)

    def _steps_done(self, run: dg.DagsterRun) -> bool:
        if run.status == dg.DagsterRunStatus.SUCCESS:
            return True
        steps = self.instance.get_run_step_stats(run.run_id)
        return bool(steps) and all(s.status == StepEventStatus.SUCCESS for s in steps)

    def end_phase(self, killed: bool) -> Phase:
        run = self.latest_run()
        if killed and run is not None and not run.is_finished:
            # What run monitoring would do for a dead worker; the UI then offers re-execution.
            self.instance.report_run_failed(run)
        latest = self.checkpoints()
        phase = Phase(
            run_id=run.run_id if run else None,
            killed=killed,
            served=self.spy.take(),
            checkpoint_records_at_end=_checkpoint_records(latest[0]) if latest else 0,
            complete_at_end=bool(latest and latest[0].get("complete")),
            steps_done=run is not None and self._steps_done(run),
        )
        self.phases.append(phase)
        return phase

    # -- results ---------------------------------------------------------------------

    def committed_keys(self) -> list[Key]:
        return [
            (str(r["ad_id"]), str(r["date_start"]))
            for r in self.store.iter_records(INSIGHTS, self.partition)
        ]


def assert_bounded_rework(phases: Sequence[Phase], log: Path | None = None) -> None:
    """A resumed process refetches only rows served after the last checkpoint."""
    served_before: set[Key] = set()
    for previous, phase in itertools.pairwise(phases):
        served_before |= set(previous.served)
        durable = previous.checkpoint_records_at_end
        refetched = len(set(phase.served) & served_before)
        since_checkpoint = len(served_before) - durable
        if previous.complete_at_end:
            since_checkpoint = 0  # the stream was exhausted and checkpointed: only the commit
        assert refetched <= since_checkpoint, (
            f"resumed run refetched {refetched} row(s); only {since_checkpoint} were served "
            f"after the last checkpoint ({durable} durable)"
            + (f"\n{readable_tail(log)}" if log is not None else "")
        )


def _checkpoint_records(checkpoint: Mapping[str, Any]) -> int:
    return sum(int(o.get("records", 0)) for o in checkpoint.get("objects", []))


def base_env(sim: Simulator, gcs_url: str, token: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "META_ACCESS_TOKEN": token,
        "META_GRAPH_URL": sim.base_url,
        "GCS_PREFIX": "",
        "GCS_PROJECT": "meta-promises",
        "STORAGE_EMULATOR_HOST": gcs_url,
        "META_PAGE_SIZE": "10",
        "GCS_RECORDS_PER_OBJECT": "10",
        "META_ASYNC_POLL_SECONDS": "0.1",
        **extra,
    }


@contextmanager
def example(
    sim: Simulator,
    spy: SimulatorSpy,
    env: Mapping[str, str],
    workdir: Path,
    partition: str,
    dagster_yaml: str = "telemetry:\n  enabled: false\n",
) -> Iterator[Example]:
    """A fresh DAGSTER_HOME and bucket for one partition."""
    home = workdir / f"home-{next(_buckets)}"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(dagster_yaml)
    bucket = f"promises-{os.getpid()}-{next(_buckets)}"
    full_env = {**env, "DAGSTER_HOME": str(home), "GCS_BUCKET": bucket}
    # STORAGE_EMULATOR_HOST is in this process's environment (the conftest sets it).
    client = storage.Client(project="meta-promises")
    client.create_bucket(bucket)
    store = PartitionStore(client, bucket, "")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        account = partition.split("|")[0]
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, [account])
        spy.take()
        yield Example(sim, spy, full_env, home, store, instance, partition)


def bucket_names(store: PartitionStore) -> list[str]:
    return [b.name for b in store.client.list_blobs(store.bucket_name)]


def wait_ok(child: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    try:
        code = child.wait(timeout=timeout)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    if code != 0:
        raise AssertionError(f"process failed (exit {code}):\n{readable_tail(log)}")


def readable_tail(log: Path, limit: int = 6000) -> str:
    """The end of a CLI log without DEBUG lines, for a failure message."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " - DEBUG - " not in ln]
    return "\n".join(lines)[-limit:]
