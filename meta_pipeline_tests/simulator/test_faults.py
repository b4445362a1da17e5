"""Every chaos fault as a client sees it on the wire, injected FIFO or drawn from the seed."""

from __future__ import annotations

import datetime as dt
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from meta_pipeline.simulator import FAULTS, Simulator, SimulatorConfig, run_simulator

from .conftest import TODAY, TOKEN, VERSION, api_get

pytestmark = pytest.mark.timeout(60)

ERROR_CASES = [
    # fault, HTTP status, code, subcode
    ("http_429", 429, 4, None),
    ("http_500", 500, 1, 99),
    ("http_503", 503, 2, None),
    ("code_4", 400, 4, 1504022),
    ("code_17", 400, 17, 2446079),
    ("code_613", 400, 613, 1487742),
    ("code_80000", 400, 80000, 2446079),
    ("code_80004", 400, 80004, 2446079),
    ("reduce_data", 500, 1, None),
    ("code_100", 400, 100, None),
    ("code_190", 400, 190, 463),
    ("code_200", 403, 200, None),
]


@pytest.mark.parametrize(("fault", "status", "code", "subcode"), ERROR_CASES)
def test_error_faults(
    sim: Simulator, fault: str, status: int, code: int, subcode: int | None
) -> None:
    path = f"{sim.world.accounts[0].id}/campaigns"
    sim.inject(fault, times=2, path_contains="/campaigns")
    for _ in range(2):
        response = api_get(sim, path, fields="id,name")
        assert response.status_code == status
        error = response.json()["error"]
        assert error["code"] == code
        assert error.get("error_subcode") == subcode
        assert error["fbtrace_id"] == response.headers["x-fb-trace-id"]
        assert "x-app-usage" in response.headers
    assert api_get(sim, path).status_code == 200  # only the next two
    assert sim.stats()["faults_injected"] == {fault: 2}


def test_error_fault_details(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    sim.inject("http_429")
    assert int(api_get(sim, account_id).headers["retry-after"]) >= 1
    sim.inject("code_80004")
    throttled = api_get(sim, account_id)
    assert throttled.json()["error"]["message"] == (
        "(#80004) There have been too many calls to this ad-account. Wait a bit and try again."
    )
    usage = json.loads(throttled.headers["x-business-use-case-usage"])
    assert usage[account_id[4:]][0]["estimated_time_to_regain_access"] > 0
    sim.inject("reduce_data")
    assert api_get(sim, account_id).json()["error"]["message"] == (
        "Please reduce the amount of data you're asking for, then retry your request"
    )
    sim.inject("http_503")
    assert api_get(sim, account_id).json()["error"]["is_transient"] is True
    sim.inject("code_100")
    assert "limit" in api_get(sim, f"{account_id}/ads", limit=5).json()["error"]["message"]


def test_faults_are_fifo_and_path_filtered(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    sim.inject("http_500", path_contains="/ads")
    sim.inject("http_503")
    assert api_get(sim, f"{account_id}/campaigns").status_code == 503  # first that matches
    assert api_get(sim, f"{account_id}/ads").status_code == 500
    assert api_get(sim, f"{account_id}/ads").status_code == 200


def test_expired_cursor_only_hits_requests_with_after(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    sim.inject("expired_cursor")
    first = api_get(sim, f"{account_id}/ads", limit=5)
    assert first.status_code == 200  # no cursor: not consumed
    after = first.json()["paging"]["cursors"]["after"]
    expired = api_get(sim, f"{account_id}/ads", limit=5, after=after)
    assert expired.status_code == 400
    assert expired.json()["error"]["code"] == 100
    assert api_get(sim, f"{account_id}/ads", limit=5, after=after).status_code == 200


def raw_get(sim: Simulator, path: str) -> tuple[bytes, BaseException | None]:
    """Read the raw bytes of one response until the server closes (or resets)."""
    host, port = urlsplit(sim.base_url).hostname, urlsplit(sim.base_url).port
    assert host and port
    received = b""
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            f"GET /{VERSION}/{path}{'&' if '?' in path else '?'}access_token={TOKEN} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        )
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError as exc:
            return received, exc
    return received, None


def test_tcp_reset_before_any_byte(sim: Simulator) -> None:
    sim.inject("tcp_reset")
    received, error = raw_get(sim, sim.world.accounts[0].id)
    assert received == b""
    assert isinstance(error, ConnectionResetError)
    sim.inject("tcp_reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        api_get(sim, sim.world.accounts[0].id)
    assert api_get(sim, sim.world.accounts[0].id).status_code == 200


def test_truncated_body(sim: Simulator) -> None:
    sim.inject("truncated_body")
    received, error = raw_get(sim, f"{sim.world.accounts[0].id}/campaigns?fields=id,name&limit=5")
    assert error is None
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200")
    length = int(
        next(line for line in lines if line.lower().startswith("content-length")).split(":")[1]
    )
    assert 0 < len(body) < length
    sim.inject("truncated_body")
    with pytest.raises(requests.exceptions.RequestException):
        api_get(sim, f"{sim.world.accounts[0].id}/campaigns")


@pytest.mark.parametrize("fault", ["html_200", "invalid_json_200"])
def test_200_that_is_not_json(sim: Simulator, fault: str) -> None:
    sim.inject(fault)
    response = api_get(sim, f"{sim.world.accounts[0].id}/campaigns")
    assert response.status_code == 200
    if fault == "html_200":
        assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_empty_page_with_next_then_continues(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    expected = [o["id"] for o in sim.world.visible_objects(account_id, "ads")]
    sim.inject("empty_page_with_next", times=2, path_contains="/ads")
    seen: list[str] = []
    empty_pages = 0
    params: dict[str, Any] = {"limit": 9}
    while True:
        body = api_get(sim, f"{account_id}/ads", **params).json()
        empty_pages += not body["data"]
        seen.extend(r["id"] for r in body["data"])
        if "next" not in body["paging"]:
            break
        params["after"] = body["paging"]["cursors"]["after"]
    assert empty_pages == 2
    assert seen == expected


def test_foreign_next(sim: Simulator) -> None:
    sim.inject("foreign_next")
    body = api_get(sim, f"{sim.world.accounts[0].id}/ads", limit=3).json()
    assert urlsplit(body["paging"]["next"]).netloc != urlsplit(sim.base_url).netloc
    assert body["data"]  # the page itself is genuine


def test_hang_outlasts_client_timeout() -> None:
    config = SimulatorConfig(seed=2, accounts=1, today=TODAY, hang_seconds=1.0)
    with run_simulator(config) as sim:
        sim.inject("hang")
        url = f"{sim.base_url}/{VERSION}/{sim.world.accounts[0].id}"
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(url, params={"access_token": TOKEN}, timeout=0.2)
        assert requests.get(url, params={"access_token": TOKEN}, timeout=5).status_code == 200


def start_report(sim: Simulator) -> str:
    time_range = json.dumps(
        {"since": (TODAY - dt.timedelta(days=3)).isoformat(), "until": TODAY.isoformat()}
    )
    response = requests.post(
        f"{sim.base_url}/{VERSION}/{sim.world.accounts[0].id}/insights",
        data={
            "access_token": TOKEN,
            "level": "ad",
            "time_increment": "1",
            "time_range": time_range,
        },
        timeout=10,
    )
    assert response.status_code == 200
    return str(response.json()["report_run_id"])


def poll(sim: Simulator, run_id: str, times: int = 6) -> list[dict[str, Any]]:
    return [api_get(sim, run_id).json() for _ in range(times)]


def test_report_run_lifecycle(sim: Simulator) -> None:
    run_id = start_report(sim)
    statuses = poll(sim, run_id, 3)
    assert [s["async_status"] for s in statuses] == [
        "Job Running",
        "Job Completed",
        "Job Completed",
    ]
    # 100 % while still running: clients must key on the status.
    assert statuses[0]["async_percent_completion"] == 100
    rows = api_get(sim, f"{run_id}/insights", limit=1000).json()["data"]
    assert rows and all(r["date_start"] == r["date_stop"] for r in rows)


@pytest.mark.parametrize(
    ("fault", "final"),
    [("job_failed", "Job Failed"), ("job_skipped", "Job Skipped"), ("job_stuck", "Job Running")],
)
def test_report_job_faults(sim: Simulator, fault: str, final: str) -> None:
    sim.inject(fault)
    assert api_get(sim, sim.world.accounts[0].id).status_code == 200  # not a report: untouched
    run_id = start_report(sim)
    statuses = poll(sim, run_id)
    assert statuses[-1]["async_status"] == final
    if fault == "job_failed":
        assert statuses[-1]["error_code"] == 1 and statuses[-1]["error_message"]
    results = api_get(sim, f"{run_id}/insights")
    assert results.status_code == 400
    assert start_report(sim) != run_id
    assert poll(sim, start_report(sim), 2)[-1]["async_status"] == "Job Completed"


def test_chaos_schedule_is_reproducible_from_the_seed() -> None:
    def observe(seed: int) -> list[str]:
        config = SimulatorConfig(
            seed=seed, accounts=1, today=TODAY, profile="chaos", hang_seconds=30
        )
        outcomes = []
        with run_simulator(config) as sim:
            path = f"{sim.world.accounts[0].id}/campaigns"
            for _ in range(80):
                try:
                    response = api_get(sim, path, fields="id")
                    outcomes.append(f"{response.status_code}:{response.text[:40]}")
                except requests.exceptions.RequestException as exc:
                    outcomes.append(type(exc).__name__)
            assert "hang" not in sim.stats()["faults_injected"]  # hang_seconds too long for chaos
        return outcomes

    first = observe(4)
    assert first == observe(4)
    assert first != observe(5)
    assert sum(not o.startswith('200:{"data"') for o in first) >= 5


def test_fault_names_are_the_published_ones() -> None:
    assert set(FAULTS) == {
        "http_429",
        "http_500",
        "http_503",
        "code_4",
        "code_17",
        "code_613",
        "code_80000",
        "code_80004",
        "reduce_data",
        "tcp_reset",
        "truncated_body",
        "html_200",
        "invalid_json_200",
        "hang",
        "expired_cursor",
        "code_100",
        "code_190",
        "code_200",
        "empty_page_with_next",
        "foreign_next",
        "job_failed",
        "job_skipped",
        "job_stuck",
    }
    with pytest.raises(ValueError):
        SimulatorConfig(fault_rates={"no_such_fault": 0.1})


def test_fault_rates_override_applies_to_clean() -> None:
    config = SimulatorConfig(seed=1, accounts=1, today=TODAY, fault_rates={"http_500": 1.0})
    with run_simulator(config) as sim:
        assert api_get(sim, sim.world.accounts[0].id).status_code == 500


def test_reduce_data_threshold() -> None:
    config = SimulatorConfig(seed=1, accounts=1, today=TODAY, reduce_data_threshold=50)
    with run_simulator(config) as sim:
        path = f"{sim.world.accounts[0].id}/ads"
        big = api_get(sim, path, limit=100)
        assert (
            big.status_code == 500 and "reduce the amount of data" in big.json()["error"]["message"]
        )
        assert api_get(sim, path, limit=50).status_code == 200
