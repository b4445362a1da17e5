"""An ad account's local day: its UTC bounds and whether its numbers are settled."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meta_pipeline.resources.meta_api import MetaAdsClient

ACCOUNT_DETAIL_FIELDS = (
    "id",
    "account_id",
    "name",
    "currency",
    "timezone_name",
    "timezone_offset_hours_utc",
    "account_status",
    "business",
    "created_time",
    "amount_spent",
    "spend_cap",
)


# An account's time zone never changes once set; ask Meta once per account and process.
_zone_names: dict[tuple[str, str], str] = {}


def account_zone(client: MetaAdsClient, account_id: str) -> ZoneInfo:
    """The account's time zone (one request per account and process)."""
    cache_key = (client.base_url, account_id)
    if cache_key not in _zone_names:
        account = client.get_account(account_id, ["timezone_name"])
        _zone_names[cache_key] = str(account.get("timezone_name") or "UTC")
    name = _zone_names[cache_key]
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"ad account {account_id} has an unknown timezone_name {name!r}") from exc


def local_day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of ``day`` in ``zone``, as aware datetimes (DST days are 23 or 25 h)."""
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start, end


def local_today(zone: ZoneInfo, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()


def is_settled(
    day: dt.date, zone: ZoneInfo, lookback_days: int, now: dt.datetime | None = None
) -> bool:
    """True once ``day`` is out of the attribution window: its numbers no longer change."""
    return (local_today(zone, now) - day).days > lookback_days


def window_extras(day: dt.date, zone: ZoneInfo) -> dict[str, object]:
    start, end = local_day_bounds(day, zone)
    return {
        "time_zone": zone.key,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
    }
