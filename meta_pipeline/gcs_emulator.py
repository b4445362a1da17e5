"""Run the local Google Cloud Storage emulator (gcp-storage-emulator) on a free port.

Used by the demo, the tests and the benchmarks. The emulator runs in a child
process by default: its HTTP server is single threaded pure Python, and sharing
a GIL with a busy Dagster run slows both down. Point google-cloud-storage at it
with ``STORAGE_EMULATOR_HOST=<url>`` (the client then uses anonymous credentials).

``python -m meta_pipeline.gcs_emulator --port 0 --bucket b`` prints
``ready http://127.0.0.1:<port>`` once listening and stops when its stdin closes,
so it never outlives the process that started it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

logger = logging.getLogger(__name__)

READY_PREFIX = "ready "
_STARTUP_TIMEOUT_SECONDS = 30.0


class EmulatorStartError(RuntimeError):
    """The emulator did not come up."""


@contextlib.contextmanager
def running_gcs_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    bucket: str | None = None,
    *,
    in_process: bool = False,
    data_dir: str | None = None,
) -> Iterator[str]:
    """Start gcp-storage-emulator (in memory), yield its URL, stop it on exit.

    ``port=0`` picks a free port. ``bucket``, if given, is created before the URL
    is yielded. ``in_process=True`` runs the server in a thread of this process.
    ``data_dir`` (absolute) keeps the objects on disk there instead, across restarts
    (the demo's data outlives the demo).
    """
    if in_process:
        with _in_process_emulator(host, port, bucket, data_dir) as url:
            yield url
        return
    with _subprocess_emulator(host, port, bucket, data_dir) as url:
        yield url


@contextlib.contextmanager
def _in_process_emulator(
    host: str, port: int, bucket: str | None, data_dir: str | None = None
) -> Iterator[str]:
    server = _start_server(host, port, bucket, data_dir)
    try:
        yield _server_url(server, host)
    finally:
        server.stop()


def _start_server(host: str, port: int, bucket: str | None, data_dir: str | None = None) -> Any:
    from gcp_storage_emulator.server import create_server

    server = create_server(
        host, port, in_memory=data_dir is None, default_bucket=bucket, data_dir=data_dir
    )
    server.start()
    return server


def _server_url(server: object, host: str) -> str:
    # The emulator does not expose the bound port; with port 0 only the socket knows it.
    httpd = server._api._httpd  # type: ignore[attr-defined]
    return f"http://{host}:{httpd.server_address[1]}"


@contextlib.contextmanager
def _subprocess_emulator(
    host: str, port: int, bucket: str | None, data_dir: str | None = None
) -> Iterator[str]:
    command = [sys.executable, "-m", "meta_pipeline.gcs_emulator", "--host", host]
    command += ["--port", str(port)]
    if bucket:
        command += ["--bucket", bucket]
    if data_dir:
        command += ["--data-dir", data_dir]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = _wait_for_ready_line(process, process.stdout)
        yield url
    finally:
        _stop(process)


def _wait_for_ready_line(process: subprocess.Popen[str], stdout: IO[str]) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=_STARTUP_TIMEOUT_SECONDS)
    except queue.Empty as exc:
        raise EmulatorStartError("gcp-storage-emulator did not start within 30 s") from exc
    if not line.startswith(READY_PREFIX):
        raise EmulatorStartError(
            f"gcp-storage-emulator exited before listening (exit code {process.poll()})"
        )
    return line[len(READY_PREFIX) :].strip()


def _stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        if process.stdin:
            process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-memory GCS emulator on a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bucket", default=None)
    parser.add_argument("--data-dir", default=None, help="absolute; on disk instead of memory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when to stop
    # (by closing stdin), so it can still commit and read while it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = _start_server(args.host, args.port, args.bucket, args.data_dir)
    try:
        sys.stdout.write(f"{READY_PREFIX}{_server_url(server, args.host)}\n")
        sys.stdout.flush()
        # Block until the parent closes our stdin (or dies): no orphaned servers.
        while sys.stdin.read(1):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
