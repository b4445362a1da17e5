"""Pacing: slow down before the limit, from the usage headers."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from meta_pipeline.resources.clock import SystemClock
from meta_pipeline.resources.errors import RetryBudgetExhausted
from meta_pipeline.resources.pacing import Pacer, parse_usage_headers, throttle_hint_seconds
from meta_pipeline.simulator import run_simulator

from .conftest import ClientFactory, drain, first_account, records, sim_config


def _app(pct: float) -> dict[str, str]:
    return {"X-App-Usage": json.dumps({"call_count": pct, "total_time": 1, "total_cputime": 1})}


def test_absent_or_garbled_headers_mean_low_usage() -> None:
    pacer = Pacer(threshold_pct=60, window_seconds=300)
    pacer.observe({}, "act_1", 0.0)
    pacer.observe({"X-App-Usage": "not json", "X-Ad-Account-Usage": "[1,2]"}, "act_1", 0.0)
    assert pacer.usage_pct("act_1", 0.0) == 0.0
    assert pacer.delay_seconds("act_1", 0.0) == 0.0


def test_delay_grows_smoothly_with_usage() -> None:
    delays = []
    for pct in (10, 50, 61, 70, 80, 90, 99):
        pacer = Pacer(threshold_pct=60, window_seconds=300)
        pacer.observe(_app(pct - 1), None, 0.0)
        pacer.observe(_app(pct), None, 0.0)  # learns one point per call
        delays.append(pacer.delay_seconds(None, 0.0))
    assert delays[0] == delays[1] == 0.0
    assert all(a < b for a, b in itertools.pairwise(delays[2:]))
    # At the midpoint (80 %) calls go exactly as fast as one call's share drains: 3 s.
    assert delays[4] == pytest.approx(3.0)


def test_usage_drains_with_time_and_disabled_pacer_never_waits() -> None:
    pacer = Pacer(threshold_pct=60, window_seconds=100)
    pacer.observe(_app(90), None, 0.0)
    assert pacer.delay_seconds(None, 0.0) > 0
    assert pacer.delay_seconds(None, 40.0) == 0.0  # 90 % drained to 50 %
    assert Pacer(enabled=False).delay_seconds(None, 0.0) == 0.0


def test_headers_parsed_from_every_usage_header() -> None:
    headers = {
        "x-app-usage": '{"call_count":28,"total_time":25,"total_cputime":25}',
        "x-ad-account-usage": '{"acc_id_util_pct":9.67,"reset_time_duration":100}',
        "x-business-use-case-usage": json.dumps(
            {
                "111": [
                    {"type": "ads_insights", "call_count": 97, "estimated_time_to_regain_access": 3}
                ]
            }
        ),
        "x-fb-ads-insights-throttle": '{"app_id_util_pct":0.01,"acc_id_util_pct":42}',
    }
    readings = {r.scope: r for r in parse_usage_headers(headers, "act_111")}
    assert readings["app"].pct == 28
    assert readings["account:act_111"].pct == pytest.approx(9.67)
    assert readings["buc:111:ads_insights"].pct == 97
    assert readings["buc:111:ads_insights"].regain_seconds == 180.0  # minutes -> seconds
    assert readings["insights_account:act_111"].pct == 42
    assert throttle_hint_seconds({**headers, "Retry-After": "7"}) == 180.0
    assert throttle_hint_seconds({"Retry-After": "7"}) == 7.0


def test_account_scopes_do_not_slow_other_accounts() -> None:
    pacer = Pacer(threshold_pct=60, window_seconds=300)
    pacer.observe({"x-ad-account-usage": '{"acc_id_util_pct":95}'}, "act_1", 0.0)
    assert pacer.delay_seconds("act_1", 0.0) > 0
    assert pacer.delay_seconds("act_2", 0.0) == 0.0


# The simulator drains its budgets on real time, so this test paces on the real clock
# with a small window: 40 calls per 2 s, a run of ~100 requests.
BUDGET_CALLS = 40
WINDOW_SECONDS = 2.0


@pytest.fixture(scope="module")
def tight_sim() -> Any:
    config = sim_config(
        account_budget_calls=BUDGET_CALLS,
        budget_window_seconds=WINDOW_SECONDS,
        scale=1.0,
    )
    with run_simulator(config, host="127.0.0.1", port=0) as server:
        yield server


@pytest.mark.timeout(120)
def test_pacing_keeps_a_long_run_under_budget(tight_sim: Any, make_client: ClientFactory) -> None:
    account = first_account(tight_sim)
    tight_sim.reset_budgets()
    tight_sim.reset_stats()
    client = make_client(
        tight_sim,
        clock=SystemClock(),
        page_size=5,
        pacing_window_seconds=WINDOW_SECONDS,
        pacing_threshold_pct=50.0,
        max_attempts=1,  # any throttle error would surface at once
    )
    streams = [drain(client.edge_source(account, "ads", ["id", "name"])) for _ in range(4)]
    expected = sorted(o["id"] for o in tight_sim.world.objects(account, "ads"))
    assert all(sorted(r["id"] for r in records(pages)) == expected for pages in streams)
    totals = [pages[-1].stats for pages in streams]
    assert sum(s.logical_requests for s in totals) > 1.5 * BUDGET_CALLS  # beyond one window
    assert all(s.throttle_waits == 0 and s.failures_by_code == {} for s in totals)
    assert tight_sim.stats()["throttled"] == 0
    # Pacing waits are accounted separately from throttle waits.
    assert sum(s.pacing_wait_seconds for s in totals) > 0
    assert all(s.throttle_wait_seconds == 0.0 for s in totals)


@pytest.mark.timeout(120)
def test_without_pacing_the_same_run_hits_throttles(
    tight_sim: Any, make_client: ClientFactory
) -> None:
    account = first_account(tight_sim)
    tight_sim.reset_budgets()
    client = make_client(
        tight_sim, pacing_enabled=False, page_size=5, max_attempts=3, max_retry_seconds=10_000
    )
    tight_sim.reset_stats()
    throttled = 0
    try:
        # Same run as above; keep going (bounded) in case this machine is slow.
        for _ in range(12):
            pages = drain(client.edge_source(account, "ads", ["id", "name"]))
            throttled += pages[-1].stats.throttle_waits
            if throttled:
                break
    except RetryBudgetExhausted as exc:
        assert exc.last.kind == "throttled"
        throttled += 1
    assert throttled > 0
    assert tight_sim.stats()["throttled"] > 0
