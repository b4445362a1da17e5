"""The Graph API surface over real HTTP: paths, fields, paging, filtering, auth, batch, control."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

from .conftest import TODAY, TOKEN, VERSION, api_get, read_all

pytestmark = pytest.mark.timeout(60)


def test_response_headers_and_content_type(sim: Simulator) -> None:
    response = api_get(sim, sim.world.accounts[0].id, fields="name")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=UTF-8"
    assert response.headers["facebook-api-version"] == VERSION
    assert response.headers["x-fb-trace-id"]
    assert response.headers["x-fb-rev"]
    assert response.json() == {"name": sim.world.accounts[0].name, "id": sim.world.accounts[0].id}


def test_bearer_header_is_accepted_and_missing_token_is_190(sim: Simulator) -> None:
    url = f"{sim.base_url}/{VERSION}/me/adaccounts"
    ok = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200
    assert len(ok.json()["data"]) == 3
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["code"] == 190
    assert error["fbtrace_id"] == missing.headers["x-fb-trace-id"]


def test_unknown_and_deprecated_versions(sim: Simulator) -> None:
    old = requests.get(f"{sim.base_url}/v19.0/me", params={"access_token": TOKEN}, timeout=10)
    assert old.status_code == 400 and old.json()["error"]["code"] == 2635
    future = requests.get(f"{sim.base_url}/v99.0/me", params={"access_token": TOKEN}, timeout=10)
    assert future.status_code == 400 and future.json()["error"]["code"] == 100


def test_default_fields_json_fields_and_unknown_field(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    default = api_get(sim, f"{account_id}/campaigns").json()["data"]
    assert default and all(set(row) == {"id"} for row in default)
    as_json = api_get(sim, f"{account_id}/campaigns", fields='["name","objective"]').json()
    assert set(as_json["data"][0]) == {"id", "name", "objective"}
    bad = api_get(sim, f"{account_id}/campaigns", fields="id,name,bogus_field")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == 100
    assert "bogus_field" in bad.json()["error"]["message"]


def test_cursors_are_opaque_and_next_repeats_every_parameter(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    first = api_get(sim, f"{account_id}/ads", fields="id,name", limit=5, summary="true").json()
    cursors = first["paging"]["cursors"]
    for cursor in cursors.values():
        assert not cursor.isdigit()
        assert not base64.urlsafe_b64decode(cursor + "==").isdigit()
    query = parse_qs(urlsplit(first["paging"]["next"]).query)
    assert query["access_token"] == [TOKEN]  # as Meta does: next URLs carry the token
    assert query["fields"] == ["id,name"]
    assert query["limit"] == ["5"]
    assert query["after"] == [cursors["after"]]
    assert "previous" not in first["paging"]
    second = requests.get(first["paging"]["next"], timeout=10).json()
    assert "previous" in second["paging"]
    back = api_get(
        sim,
        f"{account_id}/ads",
        fields="id,name",
        limit=5,
        before=second["paging"]["cursors"]["before"],
    ).json()
    assert back["data"] == first["data"]


def test_last_page_has_cursors_but_no_next_and_total_count_matches(sim: Simulator) -> None:
    account_id = sim.world.accounts[1].id
    records = read_all(sim, f"{account_id}/adsets", fields="id", limit=4)
    expected = sim.world.visible_objects(account_id, "adsets")
    assert [r["id"] for r in records] == [o["id"] for o in expected]
    total = api_get(sim, f"{account_id}/adsets", summary="total_count").json()["summary"]
    assert total == {"total_count": len(expected)}
    last = api_get(sim, f"{account_id}/adsets", limit=len(expected)).json()
    assert "next" not in last["paging"] and set(last["paging"]["cursors"]) == {"before", "after"}


def test_forged_cursor_is_refused(sim: Simulator) -> None:
    forged = base64.urlsafe_b64encode(b"AQH00000010").decode()
    response = api_get(sim, f"{sim.world.accounts[0].id}/ads", after=forged)
    assert response.status_code == 400 and response.json()["error"]["code"] == 100


def test_deleted_and_archived_hidden_unless_asked(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    every = sim.world.objects(account_id, "ads")
    hidden = {o["id"] for o in every if o["effective_status"] in ("DELETED", "ARCHIVED")}
    assert hidden  # the world has some
    default_ids = {r["id"] for r in read_all(sim, f"{account_id}/ads", limit=100)}
    assert not default_ids & hidden
    asked = read_all(sim, f"{account_id}/ads", effective_status='["DELETED","ARCHIVED"]', limit=100)
    assert {r["id"] for r in asked} == hidden
    filtered = read_all(
        sim,
        f"{account_id}/ads",
        limit=100,
        filtering=json.dumps(
            [{"field": "ad.effective_status", "operator": "IN", "value": ["DELETED"]}]
        ),
    )
    assert {r["id"] for r in filtered} == {
        o["id"] for o in every if o["effective_status"] == "DELETED"
    }


def test_filtering_on_updated_time(sim: Simulator) -> None:
    account_id = sim.world.accounts[2].id
    data = sim.world.data(account_id)
    objects = [
        o
        for o in data.by_kind["ads"]
        if o.fields["effective_status"] not in ("DELETED", "ARCHIVED")
    ]
    cutoff = sorted(o.updated_unix for o in objects)[len(objects) // 2]
    records = read_all(
        sim,
        f"{account_id}/ads",
        fields="id,updated_time",
        limit=10,
        filtering=json.dumps(
            [{"field": "ad.updated_time", "operator": "GREATER_THAN", "value": cutoff}]
        ),
    )
    expected = {o.id for o in objects if o.updated_unix > cutoff}
    assert {r["id"] for r in records} == expected
    assert 0 < len(expected) < len(objects)


def test_activities_since_until(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    data = sim.world.data(account_id)
    events = data.by_kind["activities"]
    since = events[len(events) // 3].created_unix
    until = events[len(events) // 6].created_unix
    records = read_all(sim, f"{account_id}/activities", since=since, until=until, limit=50)
    expected = [e.fields for e in events if since <= e.created_unix <= until]
    assert records == expected and expected
    assert {"event_time", "event_type", "object_id", "translated_event_type"} <= set(records[0])


def test_objects_by_id_and_ids_lookup(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    ad = sim.world.objects(account_id, "ads")[0]
    creative = sim.world.objects(account_id, "adcreatives")[0]
    assert api_get(sim, ad["id"], fields="name,adset_id").json() == {
        "name": ad["name"],
        "adset_id": ad["adset_id"],
        "id": ad["id"],
    }
    assert "updated_time" not in creative  # as at Meta
    both = api_get(sim, "", ids=f"{ad['id']},{creative['id']}", fields="name").json()
    assert both == {
        ad["id"]: {"name": ad["name"], "id": ad["id"]},
        creative["id"]: {"name": creative["name"], "id": creative["id"]},
    }
    missing = api_get(sim, "23000000000000000")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 100


def test_batch_over_http_with_errors_per_item(sim: Simulator) -> None:
    account_id = sim.world.accounts[0].id
    batch = [
        {"method": "GET", "relative_url": f"{account_id}?fields=name"},
        {"method": "GET", "relative_url": f"{VERSION}/{account_id}/campaigns?limit=2"},
        {"method": "GET", "relative_url": f"{account_id}/campaigns?fields=nope"},
    ]
    response = requests.post(
        f"{sim.base_url}/{VERSION}/",
        data={"access_token": TOKEN, "batch": json.dumps(batch)},
        timeout=10,
    )
    assert response.status_code == 200
    items = response.json()
    assert [i["code"] for i in items] == [200, 200, 400]
    assert json.loads(items[0]["body"])["name"] == sim.world.accounts[0].name
    assert len(json.loads(items[1]["body"])["data"]) == 2
    assert json.loads(items[2]["body"])["error"]["code"] == 100
    names = {h["name"] for h in items[0]["headers"]}
    assert {"content-type", "x-business-use-case-usage"} <= names
    too_many = requests.post(
        f"{sim.base_url}/{VERSION}/",
        data={"access_token": TOKEN, "batch": json.dumps(batch * 17)},
        timeout=10,
    )
    assert too_many.status_code == 400


def test_appsecret_proof_checked() -> None:
    secret = "s3cret"
    config = SimulatorConfig(seed=3, accounts=1, today=TODAY, app_secret=secret)
    with run_simulator(config) as sim:
        url = f"{sim.base_url}/{VERSION}/me/adaccounts"
        good = hmac.new(secret.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
        ok = requests.get(url, params={"access_token": TOKEN, "appsecret_proof": good}, timeout=10)
        assert ok.status_code == 200
        missing = requests.get(url, params={"access_token": TOKEN}, timeout=10)
        assert missing.status_code == 400 and missing.json()["error"]["code"] == 100
        wrong = requests.get(
            url, params={"access_token": TOKEN, "appsecret_proof": "0" * 64}, timeout=10
        )
        assert wrong.status_code == 400
        assert wrong.json()["error"] == {
            "message": "Invalid appsecret_proof provided in the API argument",
            "type": "GraphMethodException",
            "code": 100,
            "fbtrace_id": wrong.headers["x-fb-trace-id"],
        }
        # The proof never leaks into paging links it did not come with... but does repeat when sent.
        page = requests.get(
            f"{sim.base_url}/{VERSION}/{sim.world.accounts[0].id}/ads",
            params={"access_token": TOKEN, "appsecret_proof": good, "limit": 2},
            timeout=10,
        ).json()
        assert parse_qs(urlsplit(page["paging"]["next"]).query)["appsecret_proof"] == [good]


def test_control_endpoints_and_stats(sim: Simulator) -> None:
    base = sim.base_url
    sim.reset_stats()
    account_id = sim.world.accounts[1].id
    api_get(sim, f"{account_id}/campaigns")
    api_get(sim, f"{account_id}/campaigns", fields="bogus")
    stats = requests.get(f"{base}/_simulator/stats", timeout=10).json()
    assert stats["requests_total"] == 2
    assert stats["by_path"] == {"/{version}/act_{id}/campaigns": 2}
    assert stats["by_status"] == {"200": 1, "400": 1}
    assert stats["by_account"] == {account_id: 2}
    assert stats == sim.stats()
    injected = requests.post(
        f"{base}/_simulator/faults",
        json={"fault": "http_503", "times": 1, "path_contains": "/adsets"},
        timeout=10,
    )
    assert injected.status_code == 200
    assert api_get(sim, f"{account_id}/campaigns").status_code == 200  # path does not match
    assert api_get(sim, f"{account_id}/adsets").status_code == 503
    assert api_get(sim, f"{account_id}/adsets").status_code == 200
    bad = requests.post(f"{base}/_simulator/faults", json={"fault": "nope"}, timeout=10)
    assert bad.status_code == 400
    moved = requests.post(f"{base}/_simulator/today", json={"today": "2026-12-05"}, timeout=10)
    assert moved.json()["today"] == "2026-12-05" and sim.today.isoformat() == "2026-12-05"
    assert requests.post(f"{base}/_simulator/reset", timeout=10).status_code == 200
    assert sim.stats()["requests_total"] == 0
    assert sim.stats()["faults_injected"] == {}


def test_world_is_deterministic_and_independent_of_profile() -> None:
    from meta_pipeline.simulator import World

    one = World(seed=21, accounts=2, scale=0.5, today=TODAY)
    two = World(seed=21, accounts=2, scale=0.5, today=TODAY)
    other = World(seed=22, accounts=2, scale=0.5, today=TODAY)
    account_id = one.accounts[0].id
    assert one.objects(account_id, "ads") == two.objects(account_id, "ads")
    assert [a.id for a in one.accounts] != [a.id for a in other.accounts]
    clean = SimulatorConfig(seed=21, accounts=2, scale=0.5, today=TODAY, profile="clean")
    chaos = SimulatorConfig(seed=21, accounts=2, scale=0.5, today=TODAY, profile="chaos")
    from meta_pipeline.simulator import Simulator as Sim

    assert Sim(clean).world.objects(account_id, "campaigns") == Sim(chaos).world.objects(
        account_id, "campaigns"
    )
