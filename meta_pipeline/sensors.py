"""Sensors: ad accounts that appear, and objects edited in Ads Manager.

- ``new_ad_accounts_sensor`` adds accounts the token can read (or the
  configured ``META_AD_ACCOUNT_IDS``) to ``meta_ad_accounts`` and requests
  their recent days.
- ``changed_objects_sensor`` reads each account's ``/activities`` change log
  since its cursor and requests the object partitions (account, local day)
  whose objects changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import dagster as dg

from meta_pipeline.accounts import configured_account_ids, discover_accounts, registered_accounts
from meta_pipeline.assets.windows import account_zone, local_today
from meta_pipeline.jobs import extract_job, objects_refresh_job
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME
from meta_pipeline.resources.errors import MetaApiError
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.schedules import TRIGGER_TAG, account_day_key, partition_exists

# A newly found account gets its last few local days right away; older history is a backfill.
NEW_ACCOUNT_RECENT_DAYS = 3
# The change log is read again this far back each time: Meta can list an activity a little
# after its event_time. Activities already seen in that overlap are remembered in the cursor.
ACTIVITIES_OVERLAP = dt.timedelta(minutes=15)
# Where an account's change log starts when the sensor first sees the account.
ACTIVITIES_INITIAL_LOOKBACK = dt.timedelta(days=NEW_ACCOUNT_RECENT_DAYS)
ACTIVITY_FIELDS = ("event_time", "event_type", "object_id", "object_type")
EVENT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_ACTIVITY_KEY = re.compile(r"[0-9]{1,12}:.*")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- new ad accounts


def accounts_fingerprint(account_ids: Iterable[str]) -> str:
    """The cursor of the new-accounts sensor: a hash of the set of account ids seen."""
    blob = "\n".join(sorted(set(account_ids)))
    return hashlib.sha256(blob.encode()).hexdigest()


def recent_days(
    zone: ZoneInfo, now: dt.datetime, days: int = NEW_ACCOUNT_RECENT_DAYS
) -> list[dt.date]:
    """The account's last ``days`` complete local days that are partitions already."""
    today = local_today(zone, now)
    candidates = [today - dt.timedelta(days=age) for age in range(1, days + 1)]
    return [day for day in candidates if partition_exists(day, now)]


@dg.sensor(
    name="new_ad_accounts_sensor",
    job=extract_job,
    minimum_interval_seconds=3600,
    description=(
        "Adds ad accounts the token can read (/me/adaccounts), or META_AD_ACCOUNT_IDS when set, "
        f"to meta_ad_accounts and extracts their last {NEW_ACCOUNT_RECENT_DAYS} local days."
    ),
)
def new_ad_accounts_sensor(
    context: dg.SensorEvaluationContext, meta: MetaAdsClient
) -> dg.SensorResult | dg.SkipReason:
    # Every id is validated (partitions.validate_account_id): one hostile id fails the tick
    # and nothing is added, as with `meta-pipeline accounts discover`.
    configured = configured_account_ids()
    available = configured or discover_accounts(meta)
    fingerprint = accounts_fingerprint(available)
    known = set(registered_accounts(context.instance))
    new = sorted(set(available) - known)
    if not new:
        reason = f"No new ad accounts ({len(available)} available, {len(known)} registered)"
        if fingerprint == context.cursor:
            return dg.SkipReason(reason)
        return dg.SensorResult(skip_reason=reason, cursor=fingerprint)
    now = _now()
    run_requests = []
    for account_id in new:
        for day in recent_days(account_zone(meta, account_id), now):
            key = account_day_key(account_id, day)
            run_requests.append(
                dg.RunRequest(
                    run_key=f"new-account:{key}",
                    partition_key=key,
                    tags={TRIGGER_TAG: "new_ad_account"},
                )
            )
    context.log.info(f"New ad accounts: {', '.join(new)}; {len(run_requests)} run(s) requested")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(
                partitions_def_name=ACCOUNTS_PARTITIONS_NAME, partition_keys=new
            )
        ],
        cursor=fingerprint,
    )


# ---------------------------------------------------------------- changed objects


@dataclass(frozen=True)
class Activity:
    """One entry of an account's change log, reduced to what picks partitions."""

    unix: int
    object_id: str
    event_type: str

    @property
    def key(self) -> str:
        return f"{self.unix}:{self.object_id}:{self.event_type}"


def parse_activity(record: Mapping[str, object]) -> Activity | None:
    raw = record.get("event_time")
    if not isinstance(raw, str):
        return None
    try:
        moment = dt.datetime.strptime(raw, EVENT_TIME_FORMAT)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return Activity(
        unix=int(moment.timestamp()),
        object_id=str(record.get("object_id") or ""),
        event_type=str(record.get("event_type") or ""),
    )


@dataclass
class AccountCursor:
    """Where an account's change log was read up to, and what was seen in the overlap."""

    until: int
    seen: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, object]:
        return {"until": self.until, "seen": sorted(self.seen)}


def load_activities_cursor(raw: str | None) -> dict[str, AccountCursor]:
    """Per-account cursors; an unreadable cursor starts over (a log line says so)."""
    if not raw:
        return {}
    try:
        payload = json.loads(raw)
        accounts = payload["accounts"]
        return {
            str(account): AccountCursor(
                until=int(entry["until"]),
                seen=frozenset(
                    str(k) for k in entry.get("seen", []) if _ACTIVITY_KEY.fullmatch(str(k))
                ),
            )
            for account, entry in accounts.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        dg.get_dagster_logger().warning("changed_objects_sensor: unreadable cursor; starting over")
        return {}


def dump_activities_cursor(cursors: Mapping[str, AccountCursor]) -> str:
    return json.dumps(
        {"accounts": {a: c.to_json() for a, c in sorted(cursors.items())}},
        sort_keys=True,
        separators=(",", ":"),
    )


def activities_cursor(since: Mapping[str, dt.datetime]) -> str:
    """A cursor that reads each account's change log from ``since`` (CLI, tests)."""
    return dump_activities_cursor(
        {account: AccountCursor(until=int(moment.timestamp())) for account, moment in since.items()}
    )


def read_activities(
    meta: MetaAdsClient, account_id: str, since: dt.datetime, until: dt.datetime
) -> list[Activity]:
    source = meta.edge_source(
        account_id, "activities", ACTIVITY_FIELDS, updated_since=since, updated_until=until
    )
    activities = []
    for page in source.open(None):
        for record in page.records:
            activity = parse_activity(record)
            if activity is not None:
                activities.append(activity)
    return activities


def changed_days(
    activities: Iterable[Activity], zone: ZoneInfo, now: dt.datetime
) -> dict[dt.date, list[Activity]]:
    """New activities by the account-local day they happened on.

    Days that are not partitions yet (today at UTC, or at the account when it is
    ahead) are left out: the daily schedule reads each day once it is complete.
    """
    by_day: dict[dt.date, list[Activity]] = {}
    for activity in activities:
        day = dt.datetime.fromtimestamp(activity.unix, tz=zone).date()
        if partition_exists(day, now):
            by_day.setdefault(day, []).append(activity)
    return by_day


@dg.sensor(
    name="changed_objects_sensor",
    job=objects_refresh_job,
    minimum_interval_seconds=900,
    description=(
        "Reads each account's /activities change log since its cursor and refreshes the "
        "campaigns, ad sets, ads and creatives of the (account, local day) partitions that changed."
    ),
)
def changed_objects_sensor(
    context: dg.SensorEvaluationContext, meta: MetaAdsClient
) -> dg.SensorResult | dg.SkipReason:
    accounts = registered_accounts(context.instance)
    if not accounts:
        return dg.SkipReason("No ad accounts registered in meta_ad_accounts")
    cursors = load_activities_cursor(context.cursor)
    now = _now()
    until_unix = int(now.timestamp())
    run_requests: list[dg.RunRequest] = []
    failed: list[str] = []
    for account_id in accounts:
        previous = cursors.get(account_id)
        start = (
            dt.datetime.fromtimestamp(previous.until, tz=dt.UTC) - ACTIVITIES_OVERLAP
            if previous is not None
            else now - ACTIVITIES_INITIAL_LOOKBACK
        )
        if start >= now:
            continue
        try:
            zone = account_zone(meta, account_id)
            activities = read_activities(meta, account_id, start, now)
        except MetaApiError as exc:
            # The account keeps its cursor and is read again next time; the others go on.
            context.log.warning(f"{account_id}: change log not read ({exc}); retried next tick")
            failed.append(account_id)
            continue
        seen = previous.seen if previous is not None else frozenset()
        fresh = [a for a in activities if a.key not in seen]
        for day, changes in sorted(changed_days(fresh, zone, now).items()):
            key = account_day_key(account_id, day)
            digest = hashlib.sha256("\n".join(sorted(a.key for a in changes)).encode())
            run_requests.append(
                dg.RunRequest(
                    run_key=f"changed-objects:{key}:{digest.hexdigest()[:16]}",
                    partition_key=key,
                    tags={TRIGGER_TAG: "activities"},
                )
            )
        horizon = until_unix - int(ACTIVITIES_OVERLAP.total_seconds())
        keep = {k for k in seen | {a.key for a in activities} if int(k.split(":", 1)[0]) >= horizon}
        cursors[account_id] = AccountCursor(until=until_unix, seen=frozenset(keep))
    cursor = dump_activities_cursor(cursors)
    if not run_requests:
        note = f"; not read: {', '.join(failed)}" if failed else ""
        return dg.SensorResult(
            skip_reason=f"No object changes in {len(accounts)} account(s){note}", cursor=cursor
        )
    context.log.info(f"Object changes: {len(run_requests)} partition(s) to refresh")
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)


sensors = [new_ad_accounts_sensor, changed_objects_sensor]
