"""Insights: async reports (rows 20, 21), split, ledger, reattach, and input checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meta_pipeline.pages import Page, ResumeRejected
from meta_pipeline.resources.clock import FakeClock
from meta_pipeline.resources.errors import MetaInputError

from .conftest import TODAY, ClientFactory, drain, first_account, records

FIELDS = ["ad_id", "impressions", "clicks", "spend"]


def busiest_day(sim: Any, account: str) -> dt.date:
    """A day of the account with rows from several campaigns (so splitting has work)."""
    best, best_campaigns = TODAY - dt.timedelta(days=3), 0
    for back in range(1, 20):
        day = TODAY - dt.timedelta(days=back)
        rows = sim.world.insights(account, since=day, until=day, level="ad")
        campaigns = len({r["campaign_id"] for r in rows})
        if campaigns > best_campaigns:
            best, best_campaigns = day, campaigns
    assert best_campaigns >= 2, "the simulated account should deliver in several campaigns"
    return best


def keys(rows: list[dict]) -> list[tuple[str, str]]:
    return sorted((str(r["ad_id"]), str(r["date_start"])) for r in rows)


@pytest.fixture
def account(fresh_sim: Any) -> str:
    return first_account(fresh_sim)


@pytest.fixture
def day(fresh_sim: Any, account: str) -> dt.date:
    return busiest_day(fresh_sim, account)


@pytest.fixture
def expected(fresh_sim: Any, account: str, day: dt.date) -> list[tuple[str, str]]:
    return keys(fresh_sim.world.insights(account, since=day, until=day, level="ad"))


def source_for(client: Any, account: str, day: dt.date, **kwargs: Any) -> Any:
    return client.insights_source(account, since=day, until=day, fields=FIELDS, **kwargs)


@pytest.mark.parametrize("use_async", [True, False])
def test_clean_insights_equal_the_world(
    make_client: ClientFactory, account: str, day: dt.date, expected: list, use_async: bool
) -> None:
    source = source_for(make_client(page_size=7), account, day, use_async=use_async)
    pages = drain(source)
    rows = records(pages)
    assert keys(rows) == expected
    assert len(rows) == len(set(keys(rows)))
    assert pages[-1].resume_state is None
    assert source.primary_key == ("ad_id", "date_start")
    assert all(not p.failures for p in pages)


def test_breakdowns_join_the_primary_key(make_client: ClientFactory, account: str) -> None:
    day = TODAY - dt.timedelta(days=2)
    source = make_client().insights_source(
        account, since=day, until=day, fields=FIELDS, breakdowns=["age", "gender"]
    )
    assert source.primary_key == ("ad_id", "date_start", "age", "gender")
    other = make_client().insights_source(account, since=day, until=day, fields=FIELDS)
    assert other.fingerprint != source.fingerprint


@pytest.mark.parametrize("fault", ["job_failed", "job_skipped"])
def test_row20_failed_job_is_retried_once(
    make_client: ClientFactory,
    fresh_sim: Any,
    account: str,
    day: dt.date,
    expected: list,
    fault: str,
) -> None:
    fresh_sim.inject(fault, times=1)
    pages = drain(source_for(make_client(), account, day))
    assert keys(records(pages)) == expected
    stats = pages[-1].stats
    assert stats.failures_by_code == {fault.replace("_", " ").replace(" ", "_"): 1}
    assert all(not p.failures for p in pages)


def test_row20_failing_twice_splits_by_campaign(
    make_client: ClientFactory, fresh_sim: Any, account: str, day: dt.date, expected: list
) -> None:
    fresh_sim.inject("job_failed", times=2)
    pages = drain(source_for(make_client(), account, day))
    rows = records(pages)
    assert keys(rows) == expected
    assert len(rows) == len(expected)
    # Every campaign slice checkpointed its own report id.
    slices = {s["scope"] for p in pages if p.resume_state for s in p.resume_state["pending"][:1]}
    assert "campaign" in slices
    assert all(not p.failures for p in pages)


def test_row20_slices_failing_for_good_go_to_the_ledger_and_the_day_continues(
    make_client: ClientFactory, fresh_sim: Any, account: str, day: dt.date
) -> None:
    fresh_sim.inject("job_failed", times=10_000)
    pages = drain(source_for(make_client(), account, day))
    failures = [f for p in pages for f in p.failures]
    adsets = {
        r["adset_id"] for r in fresh_sim.world.insights(account, since=day, until=day, level="ad")
    }
    assert len(failures) == len(adsets)
    assert records(pages) == []
    assert pages[-1].resume_state is None
    for entry in failures:
        assert entry.kind == "insights_slice"
        assert entry.request["method"] == "POST"
        assert entry.request["path"] == f"/{account}/insights"
        assert "adset.id" in entry.request["params"]["filtering"]
    stats = pages[-1].stats
    assert stats.failures_by_code["insights_slice"] == len(adsets)
    assert stats.accuracy < 1.0


def test_ledger_entry_replays_the_slice(
    make_client: ClientFactory, fresh_sim: Any, account: str, day: dt.date
) -> None:
    client = make_client(async_max_split_depth=0)
    fresh_sim.inject("job_failed", times=2)
    pages = drain(source_for(client, account, day))
    (entry,) = [f for p in pages for f in p.failures]
    replayed = list(client.replay(entry))
    expected = keys(fresh_sim.world.insights(account, since=day, until=day, level="ad"))
    assert keys(records(replayed)) == expected
    assert all(not p.failures for p in replayed)


def test_row21_stuck_report_is_abandoned_at_the_deadline(
    make_client: ClientFactory,
    fresh_sim: Any,
    clock: FakeClock,
    account: str,
    day: dt.date,
    expected: list,
) -> None:
    fresh_sim.inject("job_stuck", times=1)
    client = make_client(async_deadline_seconds=600, async_poll_interval_seconds=10)
    pages = drain(source_for(client, account, day))
    assert keys(records(pages)) == expected
    assert pages[-1].stats.failures_by_code == {"job_stuck": 1}
    assert clock.now() >= 600


def test_reattaches_to_a_running_report_after_a_crash(
    make_client: ClientFactory, fresh_sim: Any, account: str, day: dt.date, expected: list
) -> None:
    source = source_for(make_client(), account, day)
    stream = source.open(None)
    started: Page = next(stream)  # yielded as soon as the report exists
    assert started.records == []
    state = started.resume_state
    assert state is not None and state["report_run_id"]
    stream.close()  # the attempt dies here
    before = _report_runs(fresh_sim)
    resumed = drain(source_for(make_client(), account, day), state)
    assert keys(records(resumed)) == expected
    assert _report_runs(fresh_sim) == before  # no new report was started
    assert resumed[-1].stats.logical_requests > started.stats.logical_requests


def test_reattaches_mid_results_by_cursor(
    make_client: ClientFactory, fresh_sim: Any, account: str, day: dt.date, expected: list
) -> None:
    source = source_for(make_client(page_size=3), account, day)
    stream = source.open(None)
    next(stream)  # report started
    first = next(stream)
    assert first.records and first.resume_state and first.resume_state["after"]
    stream.close()
    rest = drain(source, first.resume_state)
    rows = list(first.records) + records(rest)
    assert keys(rows) == expected and len(rows) == len(expected)


def test_unknown_report_on_resume_is_rejected(
    make_client: ClientFactory, account: str, day: dt.date
) -> None:
    state = {"pending": [{"scope": "account"}], "report_run_id": "424242424242", "stats": {}}
    with pytest.raises(ResumeRejected):
        next(source_for(make_client(), account, day).open(state))


def test_hostile_resume_state_is_rejected(make_client: ClientFactory, account: str) -> None:
    day = TODAY - dt.timedelta(days=1)
    source = source_for(make_client(), account, day)
    with pytest.raises(ResumeRejected):
        next(source.open({"pending": [{"scope": "account"}], "report_run_id": "../me"}))
    with pytest.raises(ResumeRejected):
        next(source.open({"pending": [{"scope": "ad", "id": "1"}]}))


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (TODAY, TODAY - dt.timedelta(days=1), "is after until"),
        (TODAY + dt.timedelta(days=3), TODAY + dt.timedelta(days=3), "in the future"),
        (dt.date(2023, 1, 1), dt.date(2023, 1, 2), "more than 37 months"),
    ],
)
def test_impossible_date_ranges_fail_before_any_request(
    make_client: ClientFactory, account: str, since: dt.date, until: dt.date, message: str
) -> None:
    client = make_client()
    with pytest.raises(MetaInputError, match=message):
        client.insights_source(account, since=since, until=until, fields=FIELDS)
    assert client.stats.attempts == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"level": "creative"},
        {"fields": ["ad_id", "spend)"]},
        {"breakdowns": ["age,gender"]},
        {"action_attribution_windows": ["7d click"]},
    ],
)
def test_bad_insights_input_fails_before_any_request(
    make_client: ClientFactory, account: str, kwargs: dict
) -> None:
    day = TODAY - dt.timedelta(days=1)
    params = {"since": day, "until": day, "fields": FIELDS, **kwargs}
    with pytest.raises(MetaInputError):
        make_client().insights_source(account, **params)


def _report_runs(sim: Any) -> int:
    """Requests to /act_<id>/insights: report creations (no sync query runs in these tests)."""
    return int(sim.stats()["by_path"].get("/{version}/act_{id}/insights", 0))
