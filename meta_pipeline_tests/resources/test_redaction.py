"""Row 23: the token, app secret and appsecret_proof never appear anywhere we emit."""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from meta_pipeline.resources.errors import MetaApiError
from meta_pipeline.resources.redact import MASK, RedactingFilter, redact, register_secrets
from meta_pipeline.simulator import run_simulator

from .conftest import (
    APP_SECRET,
    PROOF,
    TODAY,
    TOKEN,
    ClientFactory,
    drain,
    secret_forms,
    sim_config,
)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    levels = {}
    for name in ("urllib3", "urllib3.connectionpool", "requests", "tenacity", "meta_pipeline"):
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="module")
def proof_sim() -> Iterator[Any]:
    """A simulator that requires appsecret_proof, so the proof is really on the wire."""
    with run_simulator(sim_config(app_secret=APP_SECRET), host="127.0.0.1", port=0) as server:
        yield server


def _assert_clean(texts: list[str]) -> None:
    blob = "\n".join(texts)
    for secret in secret_forms():
        assert secret not in blob, f"a secret form leaked ({len(secret)} chars)"


def test_token_leak_sweep(proof_sim: Any, make_client: ClientFactory, captured: Capture) -> None:
    account = proof_sim.world.accounts[0].id
    proof_sim.reset_stats()
    client = make_client(proof_sim, app_secret=APP_SECRET, page_size=5)
    texts: list[str] = []

    def attempt(call: Any) -> None:
        try:
            result = call()
            texts.append(json.dumps(result, default=str))
        except MetaApiError as exc:
            texts.append("".join(traceback.format_exception(exc)))
            entry = getattr(exc, "ledger_entry", None)
            if entry is not None:
                texts.append(json.dumps(entry.to_dict()))

    def read_edge() -> list:
        pages = drain(client.edge_source(account, "campaigns", ["id", "name"]))
        return [p.resume_state for p in pages] + [p.stats.to_dict() for p in pages]

    for fault in (
        "http_429",
        "http_500",
        "tcp_reset",
        "truncated_body",
        "html_200",
        "foreign_next",
        "code_100",
        "code_190",
        "code_17",
    ):
        proof_sim.inject(fault, times=1, path_contains="/campaigns")
        attempt(read_edge)
    day = TODAY - dt.timedelta(days=2)
    proof_sim.inject("job_failed", times=10_000)
    try:
        pages = drain(
            client.insights_source(account, since=day, until=day, fields=["ad_id", "spend"])
        )
    finally:
        proof_sim.clear_faults()
    ledger = [f.to_dict() for p in pages for f in p.failures]
    assert ledger, "the sweep should have produced ledger entries"
    texts.append(json.dumps(ledger))
    texts.extend(json.dumps(p.resume_state) for p in pages)
    texts.append(json.dumps(dict(client.edge_source(account, "ads", ["id"]).manifest_extras)))

    # The sweep is meaningful: urllib3 debug lines were captured, the proof was accepted.
    urllib3_lines = [line for line in captured.lines if line.startswith("urllib3")]
    assert any("/v25.0/" in line and "appsecret_proof=" in line for line in urllib3_lines)
    # The token travels in the Authorization header, never in a URL.
    assert not any("access_token" in line for line in urllib3_lines)
    assert any("retrying" in line for line in captured.lines)
    assert client.get_account(account, ["id"])["id"] == account
    _assert_clean(texts + captured.lines)


def test_redact_masks_raw_and_encoded_secrets_and_secret_shapes() -> None:
    register_secrets([TOKEN, APP_SECRET, PROOF])
    text = (
        f"url?access_token={TOKEN}&appsecret_proof={PROOF} Bearer {TOKEN} "
        f"secret={APP_SECRET} other access_token=foreign-token-xyz"
    )
    cleaned = redact(text)
    _assert_clean([cleaned])
    assert "foreign-token-xyz" not in cleaned
    assert cleaned.count(MASK) >= 5


def test_filter_redacts_arguments_and_tracebacks() -> None:
    register_secrets([TOKEN])
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", (TOKEN,), None)
    try:
        raise RuntimeError(f"boom {TOKEN}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted
    assert "boom" in formatted


def test_api_errors_redact_whatever_the_server_echoed() -> None:
    register_secrets([TOKEN, PROOF])
    error = MetaApiError(
        f"bad request for access_token={TOKEN}", path=f"me?appsecret_proof={PROOF}"
    )
    _assert_clean(["".join(traceback.format_exception(error)), error.message])
