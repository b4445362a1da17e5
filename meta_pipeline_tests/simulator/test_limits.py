"""Rate limits for real: budgets fill with calls, drain over the window, and throttle over 100 %."""

from __future__ import annotations

import json
import time

import pytest

from meta_pipeline.simulator import SimulatorConfig, run_simulator

from .conftest import TODAY, api_get

pytestmark = pytest.mark.timeout(60)


def test_account_usage_rises_then_80004_until_recovered() -> None:
    config = SimulatorConfig(
        seed=3, accounts=2, today=TODAY, account_budget_calls=5, budget_window_seconds=1.0
    )
    with run_simulator(config) as sim:
        account_id = sim.world.accounts[0].id
        bare = account_id[4:]
        usages = []
        for _ in range(4):
            response = api_get(sim, f"{account_id}/campaigns")
            assert response.status_code == 200
            usages.append(json.loads(response.headers["x-ad-account-usage"])["acc_id_util_pct"])
            business = json.loads(response.headers["x-business-use-case-usage"])
            assert {entry["type"] for entry in business[bare]} == {"ads_management", "ads_insights"}
        assert usages == sorted(usages) and usages[-1] > usages[0] > 0
        # Fill to the brim, then one more is refused.
        statuses = [api_get(sim, f"{account_id}/campaigns").status_code for _ in range(3)]
        assert 400 in statuses
        refused = api_get(sim, f"{account_id}/campaigns")
        error = refused.json()["error"]
        assert (error["code"], error["error_subcode"]) == (80004, 2446079)
        business = json.loads(refused.headers["x-business-use-case-usage"])[bare]
        management = next(e for e in business if e["type"] == "ads_management")
        assert management["call_count"] >= 100
        assert management["estimated_time_to_regain_access"] >= 1  # minutes, rounded up
        assert sim.stats()["throttled"] >= 2
        # Another account has its own budget.
        assert api_get(sim, f"{sim.world.accounts[1].id}/campaigns").status_code == 200
        # Reading the account node itself is throttled with 613.
        assert api_get(sim, account_id).json()["error"]["code"] == 613
        # The budget drains over the window: after waiting, calls go through again.
        deadline = time.monotonic() + 10
        while api_get(sim, f"{account_id}/campaigns").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        sim.reset_budgets()
        fresh = api_get(sim, f"{account_id}/campaigns")
        assert json.loads(fresh.headers["x-ad-account-usage"])["acc_id_util_pct"] <= 20


def test_insights_budget_gives_80000_and_insights_throttle_header() -> None:
    config = SimulatorConfig(
        seed=3, accounts=1, today=TODAY, account_budget_calls=3, budget_window_seconds=60.0
    )
    with run_simulator(config) as sim:
        account_id = sim.world.accounts[0].id
        first = api_get(sim, f"{account_id}/insights", date_preset="yesterday")
        throttle = json.loads(first.headers["x-fb-ads-insights-throttle"])
        assert throttle["acc_id_util_pct"] > 0 and "app_id_util_pct" in throttle
        for _ in range(2):
            assert (
                api_get(sim, f"{account_id}/insights", date_preset="yesterday").status_code == 200
            )
        refused = api_get(sim, f"{account_id}/insights", date_preset="yesterday")
        assert refused.json()["error"]["code"] == 80000
        insights = json.loads(refused.headers["x-fb-ads-insights-throttle"])
        assert insights["acc_id_util_pct"] > 100  # percentages can exceed 100
        # Ads management has its own budget.
        assert api_get(sim, f"{account_id}/campaigns").status_code == 200


def test_app_budget_gives_code_4() -> None:
    config = SimulatorConfig(
        seed=3, accounts=2, today=TODAY, app_budget_calls=4, budget_window_seconds=60.0
    )
    with run_simulator(config) as sim:
        accounts = [a.id for a in sim.world.accounts]
        for i in range(4):
            response = api_get(sim, f"{accounts[i % 2]}/ads")
            assert response.status_code == 200
        app_usage = json.loads(response.headers["x-app-usage"])
        assert 95 <= app_usage["call_count"] <= 100
        refused = api_get(sim, f"{accounts[1]}/ads")
        assert refused.json()["error"]["code"] == 4
        assert refused.json()["error"]["error_subcode"] == 1504022


def test_batch_items_count_against_budgets() -> None:
    config = SimulatorConfig(
        seed=3, accounts=1, today=TODAY, account_budget_calls=3, budget_window_seconds=60.0
    )
    with run_simulator(config) as sim:
        import requests

        account_id = sim.world.accounts[0].id
        batch = [{"method": "GET", "relative_url": f"{account_id}/campaigns"}] * 5
        response = requests.post(
            f"{sim.base_url}/v25.0/",
            data={"access_token": "sim-token", "batch": json.dumps(batch)},
            timeout=10,
        )
        codes = [item["code"] for item in response.json()]
        assert codes == [200, 200, 200, 400, 400]
