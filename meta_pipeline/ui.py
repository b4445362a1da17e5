"""``make ui``: the demo's world with ``dagster dev`` (webserver and daemon) on top.

The simulator, the on-disk GCS emulator and the registered accounts are the ones
``make demo`` uses (same work folder, same ``DAGSTER_HOME``), so the UI shows what
the demo materialized, and backfills, sensors and schedules launched there run
against the same simulator and bucket. Ctrl-C stops ``dagster dev`` (with its
webserver, daemon and code server) and then both services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from meta_pipeline.demo import demo_world

_STOP_TIMEOUT_SECONDS = 30.0


def dagster_dev_command(host: str, port: int) -> list[str]:
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "dev", "-m", "meta_pipeline.definitions", "--host", host, "--port", str(port)]


def run_ui(
    workdir: Path,
    *,
    accounts: int = 3,
    seed: int = 42,
    scale: float = 1.0,
    profile: str = "realistic",
    host: str = "127.0.0.1",
    port: int = 3000,
    out: TextIO = sys.stdout,
) -> int:
    try:
        with demo_world(
            workdir, accounts=accounts, seed=seed, scale=scale, profile=profile
        ) as world:
            print(
                f"meta_pipeline ui: simulator {world.sim.base_url}, GCS emulator "
                f"{world.gcs_url} (bucket on disk in {world.gcs_dir}),\n"
                f"  DAGSTER_HOME={world.dagster_home}, accounts {', '.join(world.account_ids)}\n"
                f"Dagster UI: http://{host}:{port}  (Ctrl-C stops everything; run `make demo` "
                f"first to see materialized partitions)",
                file=out,
                flush=True,
            )
            # Its own session: Ctrl-C is forwarded once, and the whole tree (webserver,
            # daemon, code server) can be stopped as a group if it does not exit by itself.
            dev = subprocess.Popen(
                dagster_dev_command(host, port),
                env={**os.environ, **world.env},
                # Not the repository root: its dagster.yaml is already in DAGSTER_HOME, and
                # dagster dev warns about one it finds in the working folder.
                cwd=world.dagster_home,
                start_new_session=True,
            )
            try:
                return dev.wait()
            except KeyboardInterrupt:
                _stop_group(dev)
                return 0
            finally:
                if dev.poll() is None:
                    _stop_group(dev)
    except KeyboardInterrupt:
        return 0


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_STOP_TIMEOUT_SECONDS)
    # dagster dev has exited (or would not): nothing of its group may outlive the launcher.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
