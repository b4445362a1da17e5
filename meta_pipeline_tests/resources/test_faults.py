"""Reliability matrix rows 1-13, 22, 24, 25 and 31 against the simulator over real HTTP."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from meta_pipeline.pages import ResumeRejected
from meta_pipeline.resources.clock import FakeClock
from meta_pipeline.resources.errors import (
    ForeignNextUrlError,
    MetaAuthError,
    MetaInputError,
    MetaInvalidRequestError,
    MetaPermissionError,
    RetryBudgetExhausted,
)

from .conftest import RETRY_AFTER_SECONDS, TOKEN, ClientFactory, drain, first_account, ids, records

FIELDS = ["id", "name", "effective_status", "updated_time"]


def read_campaigns(client: Any, account: str) -> tuple[list[dict], Any]:
    pages = drain(client.edge_source(account, "campaigns", FIELDS))
    return records(pages), pages[-1].stats


@pytest.fixture
def account(fresh_sim: Any) -> str:
    return first_account(fresh_sim)


@pytest.fixture
def expected_ids(fresh_sim: Any, account: str) -> list[str]:
    return ids(fresh_sim.world.objects(account, "campaigns"))


def test_clean_read_returns_every_campaign_of_every_status(
    make_client: ClientFactory, account: str, expected_ids: list[str]
) -> None:
    rows, stats = read_campaigns(make_client(), account)
    assert ids(rows) == expected_ids
    assert len(rows) == len(set(ids(rows)))
    assert stats.retries == 0
    assert stats.accuracy == 1.0


def test_row1_429_retry_after_is_waited_once(
    make_client: ClientFactory, fresh_sim: Any, clock: FakeClock, account: str, expected_ids: list
) -> None:
    fresh_sim.inject("http_429", times=1, path_contains="/campaigns")
    rows, stats = read_campaigns(make_client(), account)
    assert ids(rows) == expected_ids
    assert stats.retries == 1
    assert stats.throttle_waits == 1
    assert clock.sleeps and max(clock.sleeps) >= RETRY_AFTER_SECONDS
    assert stats.throttle_wait_seconds >= RETRY_AFTER_SECONDS
    assert stats.failures_by_code == {}


@pytest.mark.parametrize("fault", ["code_4", "code_17", "code_613", "code_80000", "code_80004"])
def test_row2_throttle_codes_wait_for_the_regain_time(
    make_client: ClientFactory,
    fresh_sim: Any,
    clock: FakeClock,
    account: str,
    expected_ids: list,
    fault: str,
) -> None:
    fresh_sim.inject(fault, times=1, path_contains="/campaigns")
    rows, stats = read_campaigns(make_client(), account)
    assert ids(rows) == expected_ids
    assert stats.throttle_waits == 1
    assert stats.failures_by_code == {}  # a throttle is a wait, not a failure
    assert stats.accuracy == 1.0
    # The BUC header asks for one minute (estimated_time_to_regain_access is in minutes);
    # our own backoff for a first retry is at most 2 s.
    assert stats.throttle_wait_seconds >= 60.0


def test_row4_throttling_beyond_the_budget_stops_inside_it(
    make_client: ClientFactory, fresh_sim: Any, clock: FakeClock, account: str
) -> None:
    fresh_sim.inject("code_17", times=50, path_contains="/campaigns")
    client = make_client(max_attempts=20, max_retry_seconds=150.0)
    source = client.edge_source(account, "campaigns", FIELDS)
    stream = source.open(None)
    with pytest.raises(RetryBudgetExhausted) as caught:
        next(stream)  # nothing is yielded, so no checkpoint can advance
    error = caught.value
    assert clock.slept <= 150.0
    assert error.code == 17 and error.subcode == 2446079
    assert "retry budget exhausted" in str(error)
    entry = error.ledger_entry  # type: ignore[attr-defined]
    assert entry.code == 17
    assert entry.request["path"] == f"/{account}/campaigns"
    assert "after" not in entry.request["params"]


@pytest.mark.parametrize("fault", ["http_500", "http_503"])
def test_row5_server_errors_retry_with_jittered_backoff(
    make_client: ClientFactory,
    fresh_sim: Any,
    clock: FakeClock,
    account: str,
    expected_ids: list,
    fault: str,
) -> None:
    fresh_sim.inject(fault, times=2, path_contains="/campaigns")
    client = make_client(backoff_base_seconds=2.0)
    rows, stats = read_campaigns(client, account)
    assert ids(rows) == expected_ids
    assert stats.retries == 2 and stats.attempts == stats.logical_requests + 2
    first, second = clock.sleeps[:2]
    assert 1.0 <= first <= 2.0  # equal jitter around the exponential step
    assert 2.0 <= second <= 4.0
    assert stats.throttle_waits == 0


def test_row5_jitter_differs_between_clients(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    waits = []
    for _ in range(3):
        local = FakeClock()
        fresh_sim.inject("http_503", times=1, path_contains="/campaigns")
        read_campaigns(make_client(clock=local), account)
        waits.append(local.sleeps[0])
    assert len(set(waits)) > 1


def test_row6_invalid_parameter_fails_at_once_naming_it(
    make_client: ClientFactory, fresh_sim: Any, clock: FakeClock, account: str
) -> None:
    fresh_sim.inject("code_100", times=1, path_contains="/campaigns")
    client = make_client()
    with pytest.raises(MetaInvalidRequestError) as caught:
        read_campaigns(client, account)
    assert caught.value.code == 100
    assert caught.value.fbtrace_id
    assert "Invalid parameter" in str(caught.value)
    assert clock.sleeps == []


def test_row6_unknown_field_is_named_and_not_retried(
    make_client: ClientFactory, account: str, clock: FakeClock
) -> None:
    client = make_client()
    with pytest.raises(MetaInvalidRequestError) as caught:
        drain(client.edge_source(account, "campaigns", ["id", "no_such_field"]))
    assert "no_such_field" in str(caught.value)
    assert clock.sleeps == []


def test_row7_expired_token_fails_fast_without_the_token(
    make_client: ClientFactory, fresh_sim: Any, clock: FakeClock, account: str
) -> None:
    fresh_sim.inject("code_190", times=1, path_contains="/campaigns")
    with pytest.raises(MetaAuthError) as caught:
        read_campaigns(make_client(), account)
    text = "".join(traceback.format_exception(caught.value))
    assert "access token expired or invalid" in text
    assert caught.value.code == 190 and caught.value.subcode == 463
    assert TOKEN not in text
    assert clock.sleeps == []


def test_row7_wrong_token_is_an_auth_error(make_client: ClientFactory, account: str) -> None:
    client = make_client(access_token="not-the-right-token-123")
    with pytest.raises(MetaAuthError):
        client.get_account(account, ["id", "name"])


def test_permission_error_is_permanent(
    make_client: ClientFactory, fresh_sim: Any, account: str, clock: FakeClock
) -> None:
    fresh_sim.inject("code_200", times=1, path_contains="/campaigns")
    with pytest.raises(MetaPermissionError):
        read_campaigns(make_client(), account)
    assert clock.sleeps == []


@pytest.mark.parametrize("fault", ["tcp_reset", "truncated_body", "html_200", "invalid_json_200"])
def test_rows_8_to_10_transport_faults_are_retried_and_never_empty_pages(
    make_client: ClientFactory, fresh_sim: Any, account: str, expected_ids: list, fault: str
) -> None:
    fresh_sim.inject(fault, times=1, path_contains="/campaigns")
    pages = drain(make_client().edge_source(account, "campaigns", FIELDS))
    assert ids(records(pages)) == expected_ids
    stats = pages[-1].stats
    assert stats.retries == 1
    assert stats.failures_by_code == {}


def test_row11_empty_page_with_next_keeps_paging(
    make_client: ClientFactory, fresh_sim: Any, account: str, expected_ids: list
) -> None:
    fresh_sim.inject("empty_page_with_next", times=2, path_contains="/campaigns")
    pages = drain(make_client().edge_source(account, "campaigns", FIELDS))
    assert ids(records(pages)) == expected_ids
    assert pages[-1].resume_state is None


@pytest.mark.timeout(60)
def test_row12_hung_server_times_out_and_retries(
    make_client: ClientFactory, fresh_sim: Any, account: str, expected_ids: list
) -> None:
    fresh_sim.inject("hang", times=1, path_contains="/campaigns")
    client = make_client(read_timeout_seconds=0.5)
    rows, stats = read_campaigns(client, account)
    assert ids(rows) == expected_ids
    assert stats.retries == 1


def test_row13_rejected_cursor_on_resume_restarts_cleanly(
    make_client: ClientFactory, fresh_sim: Any, account: str, expected_ids: list
) -> None:
    client = make_client(page_size=3)
    source = client.edge_source(account, "campaigns", FIELDS)
    stream = source.open(None)
    first = next(stream)
    assert first.resume_state is not None
    fresh_sim.inject("expired_cursor", times=1, path_contains="/campaigns")
    with pytest.raises(ResumeRejected):
        next(source.open(first.resume_state))
    pages = drain(source)
    rows = records(pages)
    assert ids(rows) == expected_ids
    assert len(rows) == len(expected_ids)  # no duplicates


def test_resume_continues_after_the_page_and_keeps_counting(
    make_client: ClientFactory, account: str, expected_ids: list
) -> None:
    client = make_client(page_size=3)
    source = client.edge_source(account, "campaigns", FIELDS)
    stream = source.open(None)
    first = next(stream)
    rest = drain(source, first.resume_state)
    rows = list(first.records) + records(rest)
    assert ids(rows) == expected_ids and len(rows) == len(expected_ids)
    full = drain(source)
    # Counters continue from the checkpoint: resumed total equals one straight run.
    assert rest[-1].stats.logical_requests == full[-1].stats.logical_requests


def test_row22_reduce_data_halves_then_restores_page_size(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    expected = ids(fresh_sim.world.objects(account, "ads"))
    fresh_sim.inject("reduce_data", times=2, path_contains="/ads")
    client = make_client(page_size=8, page_size_restore_after=1)
    pages = drain(client.edge_source(account, "ads", ["id", "name"]))
    assert ids(records(pages)) == expected
    sizes = [len(p.records) for p in pages]
    # 8 -> 4 -> 2 on the two failures, then doubling back after each success.
    assert sizes[:3] == [2, 4, 8]
    assert max(sizes) == 8
    assert pages[-1].stats.retries == 2
    assert pages[-1].stats.failures_by_code == {}


def test_row24_foreign_next_host_is_refused(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    fresh_sim.inject("foreign_next", times=1, path_contains="/campaigns")
    client = make_client(page_size=3)
    with pytest.raises(ForeignNextUrlError) as caught:
        read_campaigns(client, account)
    text = "".join(traceback.format_exception(caught.value))
    assert "foreign host" in text
    assert TOKEN not in text


@pytest.mark.parametrize("bad", ["../act_1", "act_1|x", "act_1\n", "act_1#", "act_", "12a", ""])
def test_row25_hostile_account_ids_fail_before_any_request(
    make_client: ClientFactory, fresh_sim: Any, bad: str
) -> None:
    client = make_client()
    before = client.stats.attempts
    with pytest.raises(MetaInputError):
        client.edge_source(bad, "campaigns", FIELDS)
    with pytest.raises(MetaInputError):
        client.get_account(bad, ["id"])
    assert client.stats.attempts == before


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get("act_1/../me"),
        lambda c: c.get("act_1?x=1"),
        lambda c: c.get("act_1#frag"),
        lambda c: c.get_objects(["123", "45/6"], ["id"]),
        lambda c: c.get_objects(["1\n2"], ["id"]),
        lambda c: c.edge_source("act_1", "insights", ["id"]),
        lambda c: c.edge_source("act_1", "../ads", ["id"]),
        lambda c: c.edge_source("act_1", "ads", ["id", "name&access_token=x"]),
        lambda c: c.edge_source("act_1", "ads", "id,name"),
    ],
)
def test_row25_hostile_paths_fields_and_edges_are_refused(
    make_client: ClientFactory, call: Any
) -> None:
    client = make_client()
    with pytest.raises(MetaInputError):
        call(client)
    assert client.stats.attempts == 0


def test_row31_three_permanent_failures_in_a_hundred_is_97_percent(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    client = make_client()
    fresh_sim.inject("code_100", times=3, path_contains=account)
    failures = 0
    for _ in range(100):
        try:
            client.get_account(account, ["id", "name"])
        except MetaInvalidRequestError:
            failures += 1
    assert failures == 3
    assert client.stats.logical_requests == 100
    assert client.stats.accuracy == pytest.approx(0.97)
    assert client.stats.failures_by_code == {"100": 3}


def test_list_accounts_get_account_and_objects(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    client = make_client()
    accounts = client.list_ad_accounts()
    assert sorted(a["id"] for a in accounts) == sorted(a.id for a in fresh_sim.world.accounts)
    info = client.get_account(account, ["id", "name", "timezone_name"])
    assert info["id"] == account
    assert info["timezone_name"] == fresh_sim.world.accounts[0].timezone_name
    wanted = ids(fresh_sim.world.objects(account, "ads"))[:60]
    before = client.stats.copy()
    found = client.get_objects([*wanted, "999999999999"], ["id", "name"])
    assert sorted(found) == wanted
    assert all(found[i]["id"] == i for i in wanted)
    # 60 ids: two ?ids= reads, one retried without the id Graph says does not exist.
    assert client.stats.succeeded_requests - before.succeeded_requests == 2
    assert client.stats.failures_by_code == {}  # the caller accounts for missing ids


def test_replay_of_an_object_ledger_entry(make_client: ClientFactory, fresh_sim: Any) -> None:
    from meta_pipeline.pages import LedgerEntry

    account = first_account(fresh_sim)
    ad = ids(fresh_sim.world.objects(account, "ads"))[0]
    entry = LedgerEntry(
        kind="object",
        request={"method": "GET", "path": f"/{ad}", "params": {"fields": "id,name"}},
        code=None,
        subcode=None,
        message="missing",
        fbtrace_id=None,
        recorded_at="2026-11-28T00:00:00+00:00",
    )
    (page,) = list(make_client().replay(entry))
    assert [r["id"] for r in page.records] == [ad]


def test_edge_filters_by_updated_time(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    import datetime as dt

    objects = fresh_sim.world.objects(account, "ads")
    stamps = sorted(dt.datetime.strptime(o["updated_time"], "%Y-%m-%dT%H:%M:%S%z") for o in objects)
    since, until = stamps[len(stamps) // 4], stamps[3 * len(stamps) // 4]
    expected = sorted(
        o["id"]
        for o in objects
        if since <= dt.datetime.strptime(o["updated_time"], "%Y-%m-%dT%H:%M:%S%z") < until
    )
    source = make_client().edge_source(
        account, "ads", ["id", "updated_time"], updated_since=since, updated_until=until
    )
    pages = drain(source)
    assert ids(records(pages)) == expected
    assert pages[-1].total_count == len(expected)
    assert source.primary_key == ("id",)
    assert len(source.fingerprint) == 64
    assert TOKEN not in repr(source.manifest_extras)


def test_activities_are_windowed_by_since_and_until(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    import datetime as dt

    def moment(row: dict) -> dt.datetime:
        return dt.datetime.strptime(row["event_time"], "%Y-%m-%dT%H:%M:%S%z")

    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    until = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    expected = [
        r for r in fresh_sim.world.objects(account, "activities") if since <= moment(r) < until
    ]
    source = make_client(page_size=4).edge_source(
        account,
        "activities",
        ["event_time", "event_type", "object_id"],
        updated_since=since,
        updated_until=until,
    )
    rows = records(drain(source))
    assert expected and len(rows) == len(expected)
    assert all(since <= moment(r) < until for r in rows)


def test_default_statuses_only_when_asked(
    make_client: ClientFactory, fresh_sim: Any, account: str
) -> None:
    visible = ids(fresh_sim.world.visible_objects(account, "ads"))
    every = ids(fresh_sim.world.objects(account, "ads"))
    assert len(visible) < len(every)
    client = make_client()
    assert (
        ids(records(drain(client.edge_source(account, "ads", ["id"], all_statuses=False))))
        == visible
    )
    assert ids(records(drain(client.edge_source(account, "ads", ["id"])))) == every
