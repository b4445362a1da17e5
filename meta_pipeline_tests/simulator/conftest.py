from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

TODAY = dt.date(2026, 11, 28)
TOKEN = "sim-token"
VERSION = "v25.0"


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Simulator]:
    with run_simulator(SimulatorConfig(seed=11, accounts=3, today=TODAY)) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: Simulator) -> Iterator[Simulator]:
    """The module's simulator, with injected faults, budgets, clock and stats reset after use."""
    yield shared_sim
    shared_sim.reset()
    shared_sim.set_today(TODAY)


def api_get(sim: Simulator, path: str, **params: Any) -> requests.Response:
    params.setdefault("access_token", TOKEN)
    return requests.get(f"{sim.base_url}/{VERSION}/{path.lstrip('/')}", params=params, timeout=10)


def read_all(sim: Simulator, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of an edge, following cursors.after while `next` is present."""
    records: list[dict[str, Any]] = []
    while True:
        response = api_get(sim, path, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body["data"])
        if "next" not in body["paging"]:
            return records
        params["after"] = body["paging"]["cursors"]["after"]
