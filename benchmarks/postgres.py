"""A throwaway PostgreSQL server for the benchmarks' Dagster instance (deploy/dagster.yaml).

Production keeps runs and event logs in PostgreSQL; the benchmarks measure that
storage, not the SQLite files of the local instance (one connection per event
write, each commit an fsync). Debian's server binaries are used when present.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "dagster"
DB = "dagster_bench"


def bin_dir() -> Path | None:
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    found = [d for d in found if (d / "initdb").exists() and (d / "postgres").exists()]
    if not found:
        return None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str]) -> None:
    result = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}"[-3000:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_postgres() -> Iterator[dict[str, str]]:
    """Start a server on a free port; yield the DAGSTER_PG_* settings deploy/dagster.yaml reads."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries absent (Debian package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="meta-bench-pg-"))
    password = secrets.token_hex(12)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    data = base / "data"
    started = False
    try:
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        port = _free_port()
        # synchronous_commit=off: a commit does not wait for its WAL flush (a common
        # setting for Dagster's event log); fsync stays on.
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {base} "
            "-c synchronous_commit=off -c max_connections=100"
        )
        _run(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        started = True
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres"
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{DB}"')
        finally:
            conn.close()
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USER": USER,
            "DAGSTER_PG_PASSWORD": password,
            "DAGSTER_PG_DB": DB,
        }
    finally:
        if started:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def running_pgbouncer(pg: dict[str, str]) -> Iterator[dict[str, str]]:
    """PgBouncer (session pooling) in front of ``pg``; yield settings that point at it.

    Dagster's storages open a connection per operation; behind PgBouncer each of those is
    a cheap client connection to the pooler, which keeps a few server connections open
    (no backend process start and no server-side authentication per operation).
    """
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        raise RuntimeError("pgbouncer absent (Debian package pgbouncer)")
    base = Path(tempfile.mkdtemp(prefix="meta-bench-pgb-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    user, password = pg["DAGSTER_PG_USER"], pg["DAGSTER_PG_PASSWORD"]
    (base / "users.txt").write_text(f'"{user}" "{password}"\n')
    (base / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={pg['DAGSTER_PG_HOST']} port={pg['DAGSTER_PG_PORT']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {base / 'users.txt'}\n"
        "pool_mode = session\ndefault_pool_size = 20\nmax_client_conn = 200\n"
        f"logfile = {base / 'pgbouncer.log'}\npidfile = {base / 'pgbouncer.pid'}\n"
    )
    if os.geteuid() == 0:
        for name in ("users.txt", "pgbouncer.ini"):
            os.chown(base / name, owner.pw_uid, owner.pw_gid)
    process = subprocess.Popen(
        _as_postgres([binary, str(base / "pgbouncer.ini")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=port,
                    user=user,
                    password=password,
                    dbname=pg["DAGSTER_PG_DB"],
                ).close()
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = base / "pgbouncer.log"
                    raise RuntimeError(
                        "pgbouncer did not start: "
                        + (log.read_text()[-2000:] if log.exists() else "no log")
                    ) from None
                time.sleep(0.2)
        yield {**pg, "DAGSTER_PG_PORT": str(port)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)
