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
