"""Shared fixtures: a Graph API simulator over real HTTP and clients on a fake clock."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meta_pipeline.pages import Page, PageSource
from meta_pipeline.resources.clock import FakeClock
from meta_pipeline.resources.meta_api import MetaAdsClient

TOKEN = "sim-token-7f3a9c2e41d8"
APP_SECRET = "sim-app-secret-5b1e77"
PROOF = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
TODAY = dt.date(2026, 11, 28)
RETRY_AFTER_SECONDS = 45
SECRETS = (TOKEN, APP_SECRET, PROOF)


def secret_forms() -> list[str]:
    """Every way a secret could show up in text: raw and URL-encoded."""
    forms: set[str] = set()
    for secret in SECRETS:
        forms.update({secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)})
    return sorted(forms)


def sim_config(**overrides: Any) -> Any:
    from meta_pipeline.simulator import SimulatorConfig

    settings: dict[str, Any] = {
        "seed": 7,
        "accounts": 2,
        "scale": 1.0,
        "profile": "clean",
        "token": TOKEN,
        "app_secret": None,
        "today": TODAY,
        "budget_window_seconds": 300.0,
        "app_budget_calls": None,
        "account_budget_calls": None,
        "fault_rates": {},
        "latency_ms": 0.0,
        "hang_seconds": 3.0,
        "reduce_data_threshold": None,
        "async_polls_to_complete": 2,
        # Far above our backoff steps, so honouring Retry-After is visible in the sleeps.
        "retry_after_seconds": RETRY_AFTER_SECONDS,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    """One clean simulator per test module; tests inject their own faults."""
    from meta_pipeline.simulator import run_simulator

    with run_simulator(sim_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def fresh_sim(sim: Any) -> Iterator[Any]:
    sim.clear_faults()
    sim.reset_stats()
    sim.reset_budgets()
    yield sim
    sim.clear_faults()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(today=TODAY)


ClientFactory = Callable[..., MetaAdsClient]


@pytest.fixture
def make_client(fresh_sim: Any, clock: FakeClock) -> Iterator[ClientFactory]:
    """Open clients against the simulator on the fake clock; closed after the test."""
    opened: list[MetaAdsClient] = []

    def factory(server: Any = None, **settings: Any) -> MetaAdsClient:
        server = server or fresh_sim
        use_clock = settings.pop("clock", clock)
        config: dict[str, Any] = {
            "access_token": TOKEN,
            "graph_url": server.base_url,
            "page_size": 25,
            "read_timeout_seconds": 10.0,
            "connect_timeout_seconds": 5.0,
        }
        config.update(settings)
        client = MetaAdsClient(**config).open(clock=use_clock)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


def first_account(server: Any) -> str:
    return str(server.world.accounts[0].id)


def drain(source: PageSource, resume_state: dict[str, Any] | None = None) -> list[Page]:
    return list(source.open(resume_state))


def records(pages: list[Page]) -> list[dict[str, Any]]:
    return [r for page in pages for r in page.records]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["id"]) for r in rows)
