"""Shared setup of the pipeline benchmarks: simulator + GCS emulator + a real Dagster instance.

The benchmark process serves the simulator (in a thread) and starts the GCS
emulator (a subprocess). Partitions are materialized by worker subprocesses
(``python -m benchmarks.worker``), one per account that may run at a time,
each running the real ``meta_extract`` job through ``execute_in_process``
against the shared instance, one partition (one Dagster run) after another.
Requests are counted with the simulator's ``/_simulator/stats`` endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

TOKEN = "bench-token"
BUCKET = "meta-bench"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchWorld:
    sim: Simulator
    gcs_url: str
    home: Path
    env: dict[str, str]
    storage: str = "sqlite"

    def storage_sessions(self) -> int | None:
        """Connections the instance storage has opened so far (PostgreSQL only), all databases.

        Dagster's storages connect per operation (no pool), so this counts its round trips
        to the database better than any client-side figure.
        """
        if self.storage not in ("postgres", "pgbouncer"):
            return None
        import psycopg2

        time.sleep(1.0)  # sessions are counted when they end; let the last ones be recorded
        conn = psycopg2.connect(
            host=self.env["DAGSTER_PG_HOST"],
            port=int(self.env["DAGSTER_PG_PORT"]),
            user=self.env["DAGSTER_PG_USER"],
            password=self.env["DAGSTER_PG_PASSWORD"],
            dbname=self.env["DAGSTER_PG_DB"],
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_stat_force_next_flush()")
                cur.execute("SELECT coalesce(sum(sessions), 0) FROM pg_stat_database")
                (count,) = cur.fetchone()
        finally:
            conn.close()
        return int(count)

    def connect_ms(self, times: int = 20) -> float | None:
        """Mean milliseconds to open, authenticate and close one storage connection."""
        if self.storage not in ("postgres", "pgbouncer"):
            return None
        import psycopg2

        started = time.perf_counter()
        for _ in range(times):
            psycopg2.connect(
                host=self.env["DAGSTER_PG_HOST"],
                port=int(self.env["DAGSTER_PG_PORT"]),
                user=self.env["DAGSTER_PG_USER"],
                password=self.env["DAGSTER_PG_PASSWORD"],
                dbname=self.env["DAGSTER_PG_DB"],
            ).close()
        return (time.perf_counter() - started) / times * 1000

    @property
    def accounts(self) -> list[str]:
        return [a.id for a in self.sim.world.accounts]

    def stats(self) -> dict[str, Any]:
        """Request counters from the simulator's stats endpoint (over HTTP, as a client sees)."""
        response = requests.get(f"{self.sim.base_url}/_simulator/stats", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def reset(self) -> None:
        """Stats and budgets back to zero (POST /_simulator/reset)."""
        requests.post(f"{self.sim.base_url}/_simulator/reset", timeout=30).raise_for_status()


STORAGES = ("postgres", "pgbouncer", "sqlite")


@contextmanager
def bench_world(
    config: SimulatorConfig,
    extra_env: Mapping[str, str] | None = None,
    storage: str = "postgres",
) -> Iterator[BenchWorld]:
    """Simulator, GCS emulator (bucket created) and an instance with the accounts registered.

    ``storage="postgres"``: the production instance (deploy/dagster.yaml, unchanged) on a
    throwaway PostgreSQL server; ``"sqlite"``: the local instance's default SQLite files.
    """
    from meta_pipeline.gcs_emulator import running_gcs_emulator

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meta-bench-")))
        home = tmp / "dagster_home"
        home.mkdir()
        pg_env: dict[str, str] = {}
        if storage in ("postgres", "pgbouncer"):
            from benchmarks.postgres import running_pgbouncer, running_postgres

            pg_env = stack.enter_context(running_postgres())
            if storage == "pgbouncer":
                pg_env = stack.enter_context(running_pgbouncer(pg_env))
            shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        else:
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        sim = stack.enter_context(run_simulator(config, host="127.0.0.1", port=0))
        gcs_url = stack.enter_context(running_gcs_emulator(bucket=BUCKET))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "META_ACCESS_TOKEN": config.token,
            "META_GRAPH_URL": sim.base_url,
            "GCS_BUCKET": BUCKET,
            "GCS_PREFIX": "",
            "GCS_PROJECT": "meta-bench",
            "STORAGE_EMULATOR_HOST": gcs_url,
            **pg_env,
            **(extra_env or {}),
        }
        import dagster as dg

        from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME

        os.environ.update(pg_env)  # the instance config reads them when it loads
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions(
                ACCOUNTS_PARTITIONS_NAME, [a.id for a in sim.world.accounts]
            )
        yield BenchWorld(sim=sim, gcs_url=gcs_url, home=home, env=env, storage=storage)


@dataclass
class WorkerSpec:
    """What one worker process materializes, in order, and how the client is tuned."""

    partitions: list[str]
    # Partitions per Dagster run, in order (a range run, as the backfill policy launches
    # them); 1: one run per partition.
    partitions_per_run: int = 1
    selection: list[str] | None = None  # asset keys like "meta/insights"; None: every asset
    meta: dict[str, Any] = field(default_factory=dict)  # MetaAdsClient field overrides
    settings: dict[str, Any] = field(default_factory=dict)  # ExtractionSettings overrides
    profile_to: str | None = None  # write a pyinstrument profile (HTML) here


def start_worker(world: BenchWorld, spec: WorkerSpec) -> subprocess.Popen[str]:
    payload = json.dumps(spec.__dict__)
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker", payload],
        env=world.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_worker(process: subprocess.Popen[str], timeout: float = 3600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0 or not out.strip():
        sys.stderr.write(err[-6000:])
        raise RuntimeError(f"benchmark worker failed with exit code {process.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_workers(world: BenchWorld, specs: Sequence[WorkerSpec]) -> tuple[float, list[dict]]:
    """Start every worker at once, wait for all; each worker's report and the wall seconds
    from the start to the end of the last run (the workers' own event-log analysis after
    their runs is left out)."""
    started = time.time()
    processes = [start_worker(world, spec) for spec in specs]
    try:
        reports = [finish_worker(p) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    return max(r["done_at"] for r in reports) - started, reports


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (``/proc/stat``).

    Busy time of every process at once: the workers, PostgreSQL, the simulator and the GCS
    emulator all share the machine's cores in these benchmarks.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


# Processes whose CPU the backfill benchmark reports apart: (label, command line substring).
SERVICE_PROCESSES = (
    ("postgres", "postgres"),
    ("gcs_emulator", "meta_pipeline.gcs_emulator"),
)


def services_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) of the benchmark's services.

    PostgreSQL backends that exit are reaped by the postmaster, whose children's time keeps
    them counted; the simulator runs inside the benchmark's own process (``self``).
    """
    tick = os.sysconf("SC_CLK_TCK")
    totals = {label: 0.0 for label, _ in SERVICE_PROCESSES}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as stat:
                # Fields after the command name, which may hold spaces: state is field 3.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for label, pattern in SERVICE_PROCESSES:
            if pattern in command:
                # utime stime cutime cstime are fields 14-17, i.e. 11-14 after the name.
                totals[label] += sum(int(v) for v in fields[11:15]) / tick
                break
    own = os.times()
    totals["self"] = own.user + own.system
    return totals


class BusySampler:
    """Samples machine busy time in the background, to read it at any instant afterwards."""

    def __init__(self, every_seconds: float = 0.25) -> None:
        self.samples: list[tuple[float, float]] = []
        self._every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = machine_busy_seconds()
            if busy is not None:
                self.samples.append((time.time(), busy))
            self._stop.wait(self._every)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy_between(self, start: float, end: float) -> float | None:
        """Busy CPU seconds between two instants (nearest samples)."""
        if len(self.samples) < 2:
            return None

        def at(instant: float) -> float:
            return min(self.samples, key=lambda sample: abs(sample[0] - instant))[1]

        return at(end) - at(start)


def requests_made(stats: Mapping[str, Any]) -> int:
    """Graph requests answered, control endpoints excluded (batch items count once each)."""
    by_path = stats.get("by_path", {})
    return int(sum(n for path, n in by_path.items() if not path.startswith("/_simulator")))


def throttled(stats: Mapping[str, Any]) -> int:
    return int(stats.get("throttled", 0))
