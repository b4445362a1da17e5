"""A real PostgreSQL server (Debian's binaries) on a free port, and instances on deploy/dagster.yaml."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PG_USER = "dagster"
_databases = itertools.count()


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding a server (Debian's layout)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    found = [d for d in found if (d / "initdb").exists() and (d / "postgres").exists()]
    if not found:
        return None
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    data_dir: Path

    def connect(self, db_name: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db_name,
            connect_timeout=10,
        )

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{os.getpid()}_{next(_databases)}"
        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def env(self, db_name: str) -> dict[str, str]:
        """The settings deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name,
        }


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; everyone else runs them as themselves.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster in a temp dir, password auth over TCP, stopped at the end."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries absent (Debian package postgresql; CI installs it)")
    pytest.importorskip("psycopg2")
    # Not under pytest's tmp_path: that is root's 0700 directory, which `postgres` cannot enter.
    base = Path(tempfile.mkdtemp(prefix="meta-pg-"))
    password = secrets.token_hex(12)
    data_dir = base / "data"
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (base, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    log = base / "server.log"
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",  # the password in DAGSTER_PG_PASSWORD must really work
                "--encoding=UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log)]
        for attempt in range(3):
            # The port is free when picked; another process may take it before the server binds.
            port = free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {base} "
                # A test cluster: durability is not what is under test; speed on 2 cores is.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            try:
                _run([*pg_ctl, "-o", options, "-w", "-t", "60", "start"], "pg_ctl start")
                started = True
                break
            except RuntimeError as error:
                if attempt == 2:
                    tail = log.read_text()[-3000:] if log.exists() else ""
                    raise RuntimeError(f"PostgreSQL did not start:\n{tail}") from error
        yield PostgresServer("127.0.0.1", port, PG_USER, password, data_dir)
    finally:
        if started:
            _run(
                [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                "pg_ctl stop",
            )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(postgres: PostgresServer) -> str:
    """A fresh database per test, so instances never see each other's runs."""
    return postgres.create_database("meta_test")


def write_production_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml, unchanged."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home
