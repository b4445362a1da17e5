"""The official facebook-business SDK, over real HTTP, cannot tell the simulator from Meta."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.adobjects.campaign import Campaign
from facebook_business.adobjects.user import User
from facebook_business.api import FacebookAdsApi, FacebookSession
from facebook_business.exceptions import FacebookRequestError

from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

from .conftest import TODAY, TOKEN, VERSION

APP_SECRET = "sdk-app-secret"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def secured_sim() -> Iterator[Simulator]:
    # app_secret set: every SDK call must carry a correct appsecret_proof.
    config = SimulatorConfig(seed=5, accounts=2, today=TODAY, app_secret=APP_SECRET)
    with run_simulator(config) as sim:
        yield sim


def sdk_api(
    sim: Simulator, token: str = TOKEN, app_secret: str | None = APP_SECRET
) -> FacebookAdsApi:
    session = FacebookSession(access_token=token, app_secret=app_secret)
    session.GRAPH = sim.base_url  # the SDK builds every URL from GRAPH + version
    return FacebookAdsApi(session, api_version=VERSION)


def test_lists_accounts_and_reads_one(secured_sim: Simulator) -> None:
    api = sdk_api(secured_sim)
    accounts = list(User(fbid="me", api=api).get_ad_accounts(fields=["account_id", "name"]))
    assert [a["id"] for a in accounts] == [a.id for a in secured_sim.world.accounts]
    expected = secured_sim.world.accounts[1]
    account = AdAccount(expected.id, api=api).api_get(
        fields=["name", "currency", "timezone_name", "account_status"]
    )
    assert account["timezone_name"] == expected.timezone_name
    assert account["currency"] == expected.currency
    assert account["account_status"] == expected.account_status


@pytest.mark.parametrize("edge", ["get_campaigns", "get_ads"])
def test_pages_with_small_limit_match_total_count(secured_sim: Simulator, edge: str) -> None:
    api = sdk_api(secured_sim)
    account_id = secured_sim.world.accounts[0].id
    secured_sim.reset_stats()
    cursor = getattr(AdAccount(account_id, api=api), edge)(
        fields=["id", "name", "effective_status"], params={"limit": 7}
    )
    ids = [obj["id"] for obj in cursor]
    kind = "campaigns" if edge == "get_campaigns" else "ads"
    expected = [o["id"] for o in secured_sim.world.visible_objects(account_id, kind)]
    assert len(ids) == cursor.total() == len(expected)
    assert ids == expected
    assert len(set(ids)) == len(ids)
    pages = secured_sim.stats()["by_path"][f"/{{version}}/act_{{id}}/{kind}"]
    assert pages == -(-len(expected) // 7)  # several pages were really fetched


def test_async_report_runs_to_completion_and_reads_every_row(secured_sim: Simulator) -> None:
    api = sdk_api(secured_sim)
    account_id = secured_sim.world.accounts[0].id
    since, until = TODAY - dt.timedelta(days=6), TODAY - dt.timedelta(days=1)
    params = {
        "level": "ad",
        "time_increment": 1,
        "time_range": {"since": since.isoformat(), "until": until.isoformat()},
        "limit": 50,
    }
    job = AdAccount(account_id, api=api).get_insights(
        fields=["ad_id", "impressions", "spend", "actions"], params=params, is_async=True
    )
    statuses = []
    for _ in range(20):
        job = job.api_get()
        statuses.append(job[AdReportRun.Field.async_status])
        if statuses[-1] == "Job Completed":
            break
        time.sleep(0.01)
    assert statuses[-1] == "Job Completed"
    assert len(statuses) >= 2  # went through a running state first
    rows = list(job.get_result(params={"limit": 50}))
    expected = secured_sim.world.insights(account_id, since, until, level="ad")
    assert len(rows) == len(expected) > 50
    assert [(r["ad_id"], r["date_start"], r["impressions"], r["spend"]) for r in rows] == [
        (e["ad_id"], e["date_start"], e["impressions"], e["spend"]) for e in expected
    ]


def test_batch_request(secured_sim: Simulator) -> None:
    api = sdk_api(secured_sim)
    campaigns = secured_sim.world.objects(secured_sim.world.accounts[0].id, "campaigns")[:3]
    batch = api.new_batch()
    results: dict[str, dict[str, object]] = {}
    failures: list[object] = []
    for campaign in campaigns:
        Campaign(campaign["id"], api=api).api_get(
            fields=["name", "status"],
            batch=batch,
            success=lambda response: results.update({response.json()["id"]: response.json()}),
            failure=failures.append,
        )
    secured_sim.reset_stats()
    assert batch.execute() is None
    assert not failures
    assert {k: (v["name"], v["status"]) for k, v in results.items()} == {
        c["id"]: (c["name"], c["status"]) for c in campaigns
    }
    stats = secured_sim.stats()
    assert stats["requests_total"] == 1
    assert stats["batch_items"] == 3


def test_wrong_token_raises_code_190(secured_sim: Simulator) -> None:
    api = sdk_api(secured_sim, token="not-the-token")
    with pytest.raises(FacebookRequestError) as caught:
        AdAccount(secured_sim.world.accounts[0].id, api=api).api_get(fields=["name"])
    assert caught.value.api_error_code() == 190
    assert caught.value.http_status() == 400


def test_wrong_app_secret_is_refused(secured_sim: Simulator) -> None:
    api = sdk_api(secured_sim, app_secret="another-secret")
    with pytest.raises(FacebookRequestError) as caught:
        AdAccount(secured_sim.world.accounts[0].id, api=api).api_get(fields=["name"])
    assert caught.value.api_error_code() == 100
    assert "appsecret_proof" in caught.value.api_error_message()
