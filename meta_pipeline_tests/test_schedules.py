"""Schedules against the Graph API simulator over real HTTP, and the local instance config."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from meta_pipeline.assets.windows import is_settled
from meta_pipeline.definitions import defs
from meta_pipeline.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    consecutive_runs,
    range_run_tags,
)
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.run_coordinator import ACCOUNT_TAG, account_tags
from meta_pipeline.schedules import (
    FINAL_DAYS_TAG,
    attribution_window_schedule,
    daily_schedule,
)
from meta_pipeline.settings import ExtractionSettings
from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

TOKEN = "schedule-test-token-9e2b"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ROOT = Path(__file__).resolve().parents[1]
# Eight accounts: one in each of the simulator's time zones (UTC-8 to UTC+11).
ACCOUNTS = 8
# A past tick, so every requested day is a partition whatever the wall clock says.
TICK = dt.datetime.combine(dt.date.today() - dt.timedelta(days=20), dt.time(9), tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=3, accounts=ACCOUNTS, scale=0.3, token=TOKEN)
    with run_simulator(config) as simulator:
        yield simulator


@pytest.fixture
def instance(sim: Simulator) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as temporary:
        temporary.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, account_ids(sim))
        yield temporary


def account_ids(sim: Simulator) -> list[str]:
    return sorted(a.id for a in sim.world.accounts)


def zone_of(sim: Simulator, account_id: str) -> ZoneInfo:
    return ZoneInfo(sim.world.account(account_id).timezone_name)


def evaluate(
    schedule: dg.ScheduleDefinition,
    sim: Simulator,
    instance: dg.DagsterInstance,
    when: dt.datetime,
    settings: ExtractionSettings | None = None,
) -> list[dg.RunRequest]:
    resources = {
        "meta": MetaAdsClient(access_token=TOKEN, graph_url=sim.base_url, max_attempts=2),
        "settings": settings or ExtractionSettings(),
    }
    with dg.build_schedule_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        scheduled_execution_time=when,
        resources=resources,
        repository_def=defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    assert data.skip_message is None, data.skip_message
    return list(data.run_requests or [])


def by_partition(requests: list[dg.RunRequest]) -> dict[str, dg.RunRequest]:
    keyed = {str(r.partition_key): r for r in requests}
    assert len(keyed) == len(requests), "one run per partition"
    return keyed


# ---------------------------------------------------------------- daily


def test_daily_schedule_requests_each_accounts_local_yesterday(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    requests = by_partition(evaluate(daily_schedule, sim, instance, TICK))
    expected = {
        f"{a}|{TICK.astimezone(zone_of(sim, a)).date() - dt.timedelta(days=1)}"
        for a in account_ids(sim)
    }
    assert set(requests) == expected
    assert daily_schedule.job_name == "meta_extract"  # every asset


def test_daily_schedule_follows_each_account_time_zone(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    # At 02:00 UTC Los Angeles is still on the previous day, Tokyo is not.
    early = TICK.replace(hour=2)
    requests = by_partition(evaluate(daily_schedule, sim, instance, early))
    days = {key.split("|")[0]: key.split("|")[1] for key in requests}
    zones = {a: zone_of(sim, a).key for a in account_ids(sim)}
    west = [a for a, z in zones.items() if z.startswith("America/")]
    east = [a for a, z in zones.items() if z.startswith("Asia/")]
    assert west and east
    utc_yesterday = (early.date() - dt.timedelta(days=1)).isoformat()
    assert all(days[a] < utc_yesterday for a in west)
    assert all(days[a] == utc_yesterday for a in east)


# ---------------------------------------------------------------- attribution window


def by_account(requests: list[dg.RunRequest]) -> dict[str, dg.RunRequest]:
    """Range run requests by account; each must be one account's range."""
    keyed: dict[str, dg.RunRequest] = {}
    for request in requests:
        assert request.partition_key is None, "a range run, not one partition"
        first = request.tags[RANGE_START_TAG].split("|")[0]
        assert request.tags[RANGE_END_TAG].split("|")[0] == first
        keyed[first] = request
    assert len(keyed) == len(requests), "one run per account"
    return keyed


def days_of(request: dg.RunRequest) -> set[dt.date]:
    first = dt.date.fromisoformat(request.tags[RANGE_START_TAG].split("|")[1])
    last = dt.date.fromisoformat(request.tags[RANGE_END_TAG].split("|")[1])
    return {first + dt.timedelta(days=n) for n in range((last - first).days + 1)}


def test_attribution_schedule_requests_the_lookback_and_the_day_leaving_it(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    lookback = ExtractionSettings().attribution_lookback_days
    assert lookback == 28
    requests = by_account(evaluate(attribution_window_schedule, sim, instance, TICK))
    accounts = account_ids(sim)
    # One range run per account instead of lookback + 1 runs each.
    assert sorted(requests) == accounts
    for account_id in accounts:
        zone = zone_of(sim, account_id)
        today = TICK.astimezone(zone).date()
        request = requests[account_id]
        days = days_of(request)
        # Yesterday back to the last day whose numbers may change, plus the one that just left.
        assert days == {today - dt.timedelta(days=age) for age in range(1, lookback + 2)}
        leaving = today - dt.timedelta(days=lookback + 1)
        assert [d for d in days if is_settled(d, zone, lookback, TICK)] == [leaving]
        assert request.tags[FINAL_DAYS_TAG] == leaving.isoformat()
        # The queue's per-account limit keys on the account the coordinator derives from it.
        assert account_tags(request.tags) == {ACCOUNT_TAG: account_id}


def test_a_day_is_marked_final_once_the_window_moves_past_it(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    settings = ExtractionSettings(attribution_lookback_days=3)
    account_id = account_ids(sim)[0]
    zone = zone_of(sim, account_id)
    oldest_open = TICK.astimezone(zone).date() - dt.timedelta(days=3)

    today = by_account(evaluate(attribution_window_schedule, sim, instance, TICK, settings))
    assert len(today) == ACCOUNTS
    assert oldest_open in days_of(today[account_id])
    assert oldest_open.isoformat() not in today[account_id].tags[FINAL_DAYS_TAG]

    tomorrow = TICK + dt.timedelta(days=1)
    next_day = by_account(evaluate(attribution_window_schedule, sim, instance, tomorrow, settings))
    # Its last materialization.
    assert next_day[account_id].tags[FINAL_DAYS_TAG] == oldest_open.isoformat()
    assert is_settled(oldest_open, zone, 3, tomorrow)

    after = by_account(
        evaluate(
            attribution_window_schedule, sim, instance, tomorrow + dt.timedelta(days=1), settings
        )
    )
    assert oldest_open not in days_of(after[account_id])  # settled days are left alone


def test_consecutive_days_become_ranges() -> None:
    d = dt.date(2026, 11, 1)
    days = [d, d + dt.timedelta(days=1), d + dt.timedelta(days=3), d + dt.timedelta(days=2)]
    assert consecutive_runs(days) == [(d, d + dt.timedelta(days=3))]
    gap = [d, d + dt.timedelta(days=2)]
    assert consecutive_runs(gap) == [(d, d), (d + dt.timedelta(days=2),) * 2]
    assert range_run_tags("act_1", d, d) == {
        RANGE_START_TAG: "act_1|2026-11-01",
        RANGE_END_TAG: "act_1|2026-11-01",
    }
    with pytest.raises(ValueError, match="ends"):
        range_run_tags("act_1", d, d - dt.timedelta(days=1))


def test_attribution_schedule_targets_insights_and_the_rollup_only() -> None:
    job = defs.resolve_job_def(attribution_window_schedule.job_name)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "meta/insights",
        "meta/daily_campaign_spend",
    }


def test_schedules_skip_without_accounts(sim: Simulator) -> None:
    with dg.instance_for_test() as empty:
        for schedule in (daily_schedule, attribution_window_schedule):
            with dg.build_schedule_context(
                instance=empty,
                scheduled_execution_time=TICK,
                resources={
                    "meta": MetaAdsClient(access_token=TOKEN, graph_url=sim.base_url),
                    "settings": ExtractionSettings(),
                },
            ) as context:
                data = schedule.evaluate_tick(context)
            assert not data.run_requests
            assert "No ad accounts" in (data.skip_message or "")


# ---------------------------------------------------------------- local instance


def test_local_dagster_yaml_queues_runs_per_account_and_retries_crashed_runs(
    tmp_path: Path,
) -> None:
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "AccountTaggingRunCoordinator"
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        config = instance.get_concurrency_config()
        queue = config.run_queue_config
        assert queue is not None
        assert queue.tag_concurrency_limits == [
            {
                "key": "meta_pipeline/account",
                "value": {"applyLimitPerUniqueValue": True},
                "limit": 1,
            }
        ]
        assert config.pool_config.default_pool_limit == 4
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert instance.get_settings("telemetry") == {"enabled": False}


def test_extract_jobs_retry_failed_steps_with_jitter() -> None:
    for name in ("meta_extract", "meta_objects_refresh", "meta_insights_refresh"):
        job = defs.resolve_job_def(name)
        policy = job.op_retry_policy
        assert policy is not None, name
        assert policy.max_retries == 2
        assert policy.jitter == dg.Jitter.FULL
