"""Account x day partitions and the validation every key passes before use.

Keys look like ``act_123|2026-11-01`` (Dagster orders the dimensions of a
multi-partition key by name: ``account`` then ``date``). The date is the ad
account's own local day, as Meta reports insights.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

ACCOUNTS_PARTITIONS_NAME = "meta_ad_accounts"
ACCOUNT_DIMENSION = "account"
DATE_DIMENSION = "date"

# Meta refuses insights start dates older than 37 months (error 3018).
MAX_HISTORY_MONTHS = 37

_ACCOUNT_KEY = re.compile(r"act_[0-9]{1,20}")
_BARE_ACCOUNT_ID = re.compile(r"[0-9]{1,20}")
_DATE_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InvalidPartitionKey(ValueError):
    """A partition key or ad account id that must not reach a URL or object key."""


def validate_account_id(value: object, *, source: str = "ad account id") -> str:
    """Return ``act_<digits>``; accept a bare ``<digits>``; reject anything else.

    Only ASCII digits pass (``str.isdigit`` would admit unicode look-alikes), so
    what comes back is safe in a Graph path and in an object key.
    """
    if isinstance(value, str):
        if _ACCOUNT_KEY.fullmatch(value):
            return value
        if _BARE_ACCOUNT_ID.fullmatch(value):
            return f"act_{value}"
    raise InvalidPartitionKey(
        f"Invalid {source} {value!r}: expected 'act_<digits>' (for example act_1234567890)"
    )


def validate_account_key(value: object, *, source: str = "account partition key") -> str:
    """A partition key of the account dimension: strictly ``act_<digits>``."""
    if isinstance(value, str) and _ACCOUNT_KEY.fullmatch(value):
        return value
    raise InvalidPartitionKey(
        f"Invalid {source} {value!r}: expected 'act_<digits>' (for example act_1234567890)"
    )


def validate_date_key(value: object, *, source: str = "date partition key") -> dt.date:
    if isinstance(value, str) and _DATE_KEY.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidPartitionKey(f"Invalid {source} {value!r}: expected a real day as YYYY-MM-DD")


@dataclass(frozen=True)
class AccountDay:
    """One partition: an ad account and one of its local days."""

    account_id: str  # act_<digits>
    day: dt.date

    @property
    def account_number(self) -> str:
        return self.account_id.removeprefix("act_")

    @property
    def partition_key(self) -> str:
        return f"{self.account_id}|{self.day.isoformat()}"


def parse_partition_key(key: object) -> AccountDay:
    """Parse and validate ``act_<digits>|YYYY-MM-DD`` (or a ``MultiPartitionKey``)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return AccountDay(
            validate_account_key(dims.get(ACCOUNT_DIMENSION)),
            validate_date_key(dims.get(DATE_DIMENSION)),
        )
    if not isinstance(key, str) or key.count("|") != 1:
        raise InvalidPartitionKey(
            f"Invalid partition key {key!r}: expected 'act_<digits>|YYYY-MM-DD'"
        )
    account, day = key.split("|")
    return AccountDay(validate_account_key(account), validate_date_key(day))


def default_start_date(today: dt.date | None = None) -> dt.date:
    """First day of the month 36 months back: always inside Meta's 37-month window."""
    today = today or dt.date.today()
    months = today.year * 12 + (today.month - 1) - 36
    return dt.date(months // 12, months % 12 + 1, 1)


def configured_start_date(today: dt.date | None = None) -> dt.date:
    """``META_START_DATE`` if set (validated), else :func:`default_start_date`."""
    raw = os.environ.get("META_START_DATE", "").strip()
    if not raw:
        return default_start_date(today)
    start = validate_date_key(raw, source="setting META_START_DATE")
    limit = default_start_date(today) - dt.timedelta(days=31)
    if start < limit:
        raise InvalidPartitionKey(
            f"Invalid setting META_START_DATE {raw!r}: Meta serves at most "
            f"{MAX_HISTORY_MONTHS} months of insights; use {limit.isoformat()} or later"
        )
    return start


account_partitions = dg.DynamicPartitionsDefinition(name=ACCOUNTS_PARTITIONS_NAME)
daily_partitions = dg.DailyPartitionsDefinition(start_date=configured_start_date().isoformat())
account_day_partitions = dg.MultiPartitionsDefinition(
    {ACCOUNT_DIMENSION: account_partitions, DATE_DIMENSION: daily_partitions}
)


def range_run_tags(account_id: str, first: dt.date, last: dt.date) -> dict[str, str]:
    """Run tags for one run over ``first``..``last`` (inclusive) of one account: a range run."""
    account = validate_account_key(account_id)
    if last < first:
        raise ValueError(f"range of {account} ends ({last}) before it starts ({first})")
    return {
        ASSET_PARTITION_RANGE_START_TAG: AccountDay(account, first).partition_key,
        ASSET_PARTITION_RANGE_END_TAG: AccountDay(account, last).partition_key,
    }


def consecutive_runs(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """``days`` as (first, last) stretches of consecutive days, oldest first."""
    stretches: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if stretches and day == stretches[-1][1] + dt.timedelta(days=1):
            stretches[-1] = (stretches[-1][0], day)
        else:
            stretches.append((day, day))
    return stretches
