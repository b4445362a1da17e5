"""Issue 9: the spy's served-rows accounting around a kill mid-request.

The kill-anywhere test once failed with "resumed run refetched 10 row(s); only 0 were
served after the last checkpoint (76 durable)": a first run SIGKILLed while the spy
held its request for page 5, a resume that read pages 5 to the end (complete
checkpoint) and was killed during its commit, then a last re-execution that fetched
nothing. The simulator still answers a held request after its client died (the hold
is a sleep); those ten rows were counted whenever the answer came, and when the
resume was quicker than the hold they landed in the last phase, as a "refetch".

Here the same three phases run in seconds, no Dagster: a real process asks for page 5
and is killed while held; the test's own reads play the resume. The rows of the held
page must count for the process that asked for them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator
from meta_pipeline_tests.promises.harness import Key, Phase, SimulatorSpy, assert_bounded_rework

TOKEN = "rework-accounting-token-0b6a"
VERSION = "v25.0"
PAGE = 10
HOLD_SECONDS = 1.5  # longer than the "resume" below, as a quick resume was in CI

# A client that dies mid-request: it asks for one page and is SIGKILLed while held.
_CLIENT = """
import os, sys, urllib.request
request = urllib.request.Request(sys.argv[1])
request.add_header("Authorization", "Bearer " + os.environ["SIM_TOKEN"])
urllib.request.urlopen(request, timeout=60).read()
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=5, accounts=1, scale=2.0, profile="clean", token=TOKEN, today=dt.date.today()
    )
    with run_simulator(config, host="127.0.0.1", port=0) as simulator:
        yield simulator


def _get(sim: Simulator, path: str, **params: Any) -> dict[str, Any]:
    response = requests.get(
        f"{sim.base_url}/{VERSION}/{path}",
        params={"access_token": TOKEN, **params},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _completed_report(sim: Simulator) -> str:
    day = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    response = requests.post(
        f"{sim.base_url}/{VERSION}/{sim.world.accounts[0].id}/insights",
        data={
            "access_token": TOKEN,
            "level": "ad",
            "fields": "ad_id,spend",
            "time_increment": "1",
            "time_range": json.dumps({"since": day, "until": day}),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    run_id = str(response.json()["report_run_id"])
    for _ in range(10):
        if _get(sim, run_id)["async_status"] == "Job Completed":
            return run_id
    raise AssertionError(f"report {run_id} did not complete")


def _read(sim: Simulator, run_id: str, after: str | None, pages: int | None) -> str | None:
    """Read ``pages`` pages (None: to the end) after ``after``; the last cursor."""
    while pages is None or pages > 0:
        params: dict[str, Any] = {"limit": PAGE, **({"after": after} if after else {})}
        body = _get(sim, f"{run_id}/insights", **params)
        if "next" not in body["paging"]:
            return None
        after = body["paging"]["cursors"]["after"]
        pages = None if pages is None else pages - 1
    return after


def _phase(served: Counter[Key], durable: int, complete: bool, killed: bool) -> Phase:
    return Phase(None, killed, served, durable, complete)


@pytest.mark.timeout(120)
def test_rows_answered_to_a_killed_process_count_for_that_process(sim: Simulator) -> None:
    spy = SimulatorSpy(sim)
    run_id = _completed_report(sim)
    total = len(sim._reports.get(run_id).rows)  # type: ignore[union-attr]
    assert total > 5 * PAGE, "enough rows for a resume after page 5"
    spy.take()

    # First run: pages 1-4 durable, then killed while the simulator holds page 5.
    cursor = _read(sim, run_id, None, 4)
    assert cursor is not None
    spy.held.clear()
    spy.hold_kinds = frozenset({"report_insights"})
    spy.hold_seconds = HOLD_SECONDS
    url = f"{sim.base_url}/{VERSION}/{run_id}/insights?limit={PAGE}&after={cursor}"
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, url],
        env={**os.environ, "SIM_TOKEN": TOKEN},
        start_new_session=True,
    )
    try:
        assert spy.held.wait(30), "the client's request never reached the simulator"
        os.killpg(client.pid, signal.SIGKILL)
    finally:
        spy.hold_seconds = 0.0
        spy.hold_kinds = None
        client.wait(timeout=30)
    first = _phase(spy.take(), 4 * PAGE, complete=False, killed=True)

    # The resume: page 5 to the end, complete checkpoint, killed during the commit.
    assert _read(sim, run_id, cursor, None) is None
    resume = _phase(spy.take(), total, complete=True, killed=True)

    # The last re-execution commits again and fetches nothing.
    time.sleep(HOLD_SECONDS + 1.0)  # past the held answer, whenever it is counted
    last = _phase(spy.take(), total, complete=True, killed=False)

    assert_bounded_rework([first, resume, last])
    assert sum(first.served.values()) == 5 * PAGE, "the held page counts for its process"
    assert sum(last.served.values()) == 0, "nothing was served to the last process"
