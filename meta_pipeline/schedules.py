"""Schedules: the daily run of yesterday, and the refresh of days still inside the attribution window.

Days are the ad account's own local days, so every schedule asks each account
for *its* yesterday. Only days that already exist as partitions are requested:
the date dimension ends at the last complete UTC day, and an account ahead of
UTC can be a day further along.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from meta_pipeline.accounts import registered_accounts
from meta_pipeline.assets.windows import account_zone, is_settled, local_today
from meta_pipeline.jobs import extract_job, insights_refresh_job
from meta_pipeline.partitions import (
    ACCOUNT_DIMENSION,
    DATE_DIMENSION,
    consecutive_runs,
    daily_partitions,
    range_run_tags,
)
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.settings import ExtractionSettings

# 09:00 UTC: every account from UTC-9 to UTC+14 has finished its yesterday, which is then the
# same calendar day as UTC's (accounts further west get the day before, also complete).
DAILY_CRON = "0 9 * * *"
# Later in the morning, so the daily run of yesterday usually lands first.
ATTRIBUTION_CRON = "0 11 * * *"

TRIGGER_TAG = "meta/trigger"
# The days of an attribution run whose materialization is their last (now out of the window).
FINAL_DAYS_TAG = "meta/final_days"


def evaluation_time(context: dg.ScheduleEvaluationContext) -> dt.datetime:
    """The tick's scheduled time (aware, UTC); now when evaluated by hand."""
    scheduled = context.scheduled_execution_time
    if scheduled is None:
        return dt.datetime.now(dt.UTC)
    if scheduled.tzinfo is None:
        scheduled = scheduled.replace(tzinfo=dt.UTC)
    return scheduled.astimezone(dt.UTC)


def partition_exists(day: dt.date, now: dt.datetime) -> bool:
    """Whether ``day`` is a key of the date dimension at ``now``."""
    with dg.partition_loading_context(effective_dt=now):
        return daily_partitions.has_partition_key(day.isoformat())


def account_day_key(account_id: str, day: dt.date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({ACCOUNT_DIMENSION: account_id, DATE_DIMENSION: day.isoformat()})


def attribution_days(today: dt.date, lookback_days: int) -> list[dt.date]:
    """Yesterday back through the lookback, plus the day that just left it (oldest last).

    The insights asset marks a day final when it is more than ``lookback_days``
    old, so the last day here gets its final materialization.
    """
    return [today - dt.timedelta(days=age) for age in range(1, lookback_days + 2)]


@dg.schedule(
    name="attribution_window_schedule",
    cron_schedule=ATTRIBUTION_CRON,
    execution_timezone="UTC",
    job=insights_refresh_job,
    description=(
        "Re-reads insights of every account for each local day still inside the attribution "
        "window (ExtractionSettings.attribution_lookback_days), plus the day that just left "
        "it, whose materialization is then marked final."
    ),
)
def attribution_window_schedule(
    context: dg.ScheduleEvaluationContext, meta: MetaAdsClient, settings: ExtractionSettings
) -> dg.SkipReason | list[dg.RunRequest]:
    now = evaluation_time(context)
    accounts = registered_accounts(context.instance)
    if not accounts:
        return dg.SkipReason("No ad accounts registered in meta_ad_accounts")
    lookback = settings.attribution_lookback_days
    requests = []
    for account_id in accounts:
        zone = account_zone(meta, account_id)
        days = [
            day
            for day in attribution_days(local_today(zone, now), lookback)
            if partition_exists(day, now)
        ]
        # One run per account for all its days (a range run): the days are consecutive, and
        # a run per day would launch lookback + 1 runs per account every morning.
        for first, last in consecutive_runs(days):
            final = [
                day.isoformat()
                for day in days
                if first <= day <= last and is_settled(day, zone, lookback, now)
            ]
            requests.append(
                dg.RunRequest(
                    run_key=f"attribution:{account_id}|{first.isoformat()}...{last.isoformat()}",
                    tags={
                        **range_run_tags(account_id, first, last),
                        TRIGGER_TAG: "attribution_window",
                        FINAL_DAYS_TAG: ",".join(final),
                    },
                )
            )
    context.log.info(
        f"Attribution refresh: {len(requests)} run(s) for {len(accounts)} account(s), "
        f"lookback {lookback} day(s)"
    )
    return requests


@dg.schedule(
    name="daily_schedule",
    cron_schedule=DAILY_CRON,
    execution_timezone="UTC",
    job=extract_job,
    description="Every Meta asset for each account's own yesterday (its local time zone).",
)
def daily_schedule(
    context: dg.ScheduleEvaluationContext, meta: MetaAdsClient
) -> dg.SkipReason | list[dg.RunRequest]:
    now = evaluation_time(context)
    accounts = registered_accounts(context.instance)
    if not accounts:
        return dg.SkipReason("No ad accounts registered in meta_ad_accounts")
    requests = []
    for account_id in accounts:
        yesterday = local_today(account_zone(meta, account_id), now) - dt.timedelta(days=1)
        if not partition_exists(yesterday, now):
            context.log.warning(f"{account_id}: {yesterday} is not a partition yet; skipped")
            continue
        key = account_day_key(account_id, yesterday)
        requests.append(
            dg.RunRequest(run_key=f"daily:{key}", partition_key=key, tags={TRIGGER_TAG: "daily"})
        )
    return requests


schedules = [daily_schedule, attribution_window_schedule]
