"""Rows 23 and 26 end to end: no secret anywhere the product writes, even at DEBUG.

A chaos run of every asset with appsecret_proof in use, Dagster's console logger and
Python logging (urllib3 included) at DEBUG, then a run that fails (a foreign
``paging.next`` whose URL carries the token, an expired token). Then every byte the
product wrote is scanned for the token, the app secret and the appsecret_proof in raw,
URL-encoded and base64 forms: DAGSTER_HOME (SQLite run and event-log storage, compute
logs), the CLI's stdout and stderr, and every object in the bucket (data, ledgers,
manifests), gzip-decoded too.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import hmac
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from meta_pipeline.config import build_resources
from meta_pipeline.simulator import SimulatorConfig
from meta_pipeline_tests.assets.conftest import Pipeline, make_pipeline

# Long random secrets: a hit is a leak, not a coincidence. The token holds characters
# that URL encoding changes, so the URL-encoded form is a distinct needle.
TOKEN = "EAAG" + secrets.token_urlsafe(48) + "+/" + secrets.token_hex(8)
APP_SECRET = secrets.token_hex(32)
PROOF = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()

DEBUG_PYTHON_LOGS = """telemetry:
  enabled: false
python_logs:
  python_log_level: DEBUG
  managed_python_loggers: [urllib3, requests, meta_pipeline, tenacity, google]
"""
DEBUG_RUN_CONFIG = json.dumps({"loggers": {"console": {"config": {"log_level": "DEBUG"}}}})
PERMANENT = ("code_100", "code_190", "code_200", "foreign_next", "hang", "job_stuck")


def needles() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, secret in (("token", TOKEN), ("app secret", APP_SECRET), ("proof", PROOF)):
        raw = secret.encode()
        forms = {
            "raw": raw,
            "url-encoded": urllib.parse.quote(secret, safe="").encode(),
            "form-encoded": urllib.parse.quote_plus(secret).encode(),
            "base64": base64.b64encode(raw).rstrip(b"="),
            "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        }
        for form, value in forms.items():
            out[f"{name} ({form})"] = value
    return out


def hits(label: str, data: bytes) -> list[str]:
    blobs = [data]
    if data[:2] == b"\x1f\x8b":
        blobs.append(gzip.decompress(data))
    return [
        f"{needle} in {label}"
        for needle, value in needles().items()
        for blob in blobs
        if value in blob
    ]


@pytest.fixture
def debug_pipeline(tmp_path: Path, promises_gcs_url: str) -> Iterator[Pipeline]:
    config = SimulatorConfig(
        seed=23,
        accounts=1,
        scale=0.5,
        profile="chaos",
        token=TOKEN,
        app_secret=APP_SECRET,
        today=dt.date.today(),
        fault_rates={name: 0.0 for name in PERMANENT},
    )
    extra = {
        "META_APP_SECRET": APP_SECRET,
        "META_PAGE_SIZE": "10",
        "GCS_RECORDS_PER_OBJECT": "10",
        "META_ASYNC_POLL_SECONDS": "0.1",
    }
    for pipeline in make_pipeline(tmp_path, promises_gcs_url, config, extra):
        (pipeline.home / "dagster.yaml").write_text(DEBUG_PYTHON_LOGS)
        yield pipeline


@pytest.mark.timeout(900)
def test_no_secret_in_anything_the_product_writes_after_a_debug_chaos_run(
    debug_pipeline: Pipeline,
) -> None:
    pipeline = debug_pipeline
    [account] = pipeline.accounts
    day = dt.date.today() - dt.timedelta(days=3)
    partition = f"{account}|{day.isoformat()}"
    debug = ("--config-json", DEBUG_RUN_CONFIG)
    select = ("-m", "meta_pipeline.definitions", "--partition", partition)

    ok = pipeline.dagster("asset", "materialize", "--select", "*", *select, *debug)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    # A failing run: its error texts, a next URL carrying the token, an expired token.
    pipeline.sim.inject("foreign_next", 1, "/insights")
    foreign = pipeline.dagster("asset", "materialize", "--select", "meta/insights", *select, *debug)
    assert foreign.returncode != 0
    pipeline.sim.inject("code_190", 1)
    expired = pipeline.dagster("asset", "materialize", "--select", "meta/ads", *select, *debug)
    assert expired.returncode != 0
    assert "access token expired or invalid" in expired.stdout + expired.stderr
    stats = pipeline.sim.stats()
    assert stats["faults_injected"], "the chaos profile injected faults"

    found: list[str] = []
    outputs = {"ok": ok, "foreign next": foreign, "expired token": expired}
    for name, result in outputs.items():
        found += hits(f"CLI stdout of the {name} run", result.stdout.encode())
        found += hits(f"CLI stderr of the {name} run", result.stderr.encode())
    files = [p for p in pipeline.home.rglob("*") if p.is_file()]
    for path in files:
        found += hits(str(path.relative_to(pipeline.home)), path.read_bytes())
    objects = list(pipeline.store.client.list_blobs(pipeline.store.bucket_name))
    for blob in objects:
        found += hits(f"gs://{blob.bucket.name}/{blob.name}", blob.download_as_bytes())
    assert found == []

    # The sweep looked at real, verbose output (else "zero hits" proves nothing).
    assert " - DEBUG - " in ok.stderr + ok.stdout
    everything = b"".join(p.read_bytes() for p in files)
    assert b"urllib3" in everything, "urllib3 debug records reached the event log"
    assert b"appsecret_proof" in everything, "requests carried the proof (name, not value)"
    names = [b.name for b in objects]
    assert any(n.endswith("_manifest.json") for n in names)
    assert any(n.endswith(".jsonl.gz") for n in names)
    assert any(p.name.endswith(".db") for p in files)


def test_secrets_reach_resources_only_as_env_vars_and_never_run_config(
    debug_pipeline: Pipeline,
) -> None:
    """Row 26: the UI's view of the code location and of a run holds env var names only."""
    pipeline = debug_pipeline
    resources = build_resources()
    meta = resources["meta"]
    assert isinstance(meta.access_token, dg.EnvVar)
    assert meta.access_token.env_var_name == "META_ACCESS_TOKEN"
    assert isinstance(meta.app_secret, dg.EnvVar)
    assert meta.app_secret.env_var_name == "META_APP_SECRET"

    # What the webserver shows for the resources: the code location's snapshot.
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from meta_pipeline.definitions import build_definitions

    repo = build_definitions().get_repository_def()
    snapshot = serialize_value(RepositorySnap.from_def(repo)).encode()
    assert hits("repository snapshot", snapshot) == []
    assert b"META_ACCESS_TOKEN" in snapshot and b"META_APP_SECRET" in snapshot

    [account] = pipeline.accounts
    day = dt.date.today() - dt.timedelta(days=2)
    result = pipeline.materialize(f"{account}|{day.isoformat()}", "meta/ad_accounts")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = pipeline.instance.get_runs()
    assert hits("run config", json.dumps(run.run_config, default=str).encode()) == []
    assert hits("run record", serialize_value(run).encode()) == []
    assert hits("CLI output", (result.stdout + result.stderr).encode()) == []
