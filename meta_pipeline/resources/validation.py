"""Checks every input passes before it reaches a URL: ids, paths, fields, dates."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from meta_pipeline.partitions import MAX_HISTORY_MONTHS, InvalidPartitionKey, validate_account_id

from .errors import MetaInputError

OBJECT_ID = re.compile(r"[0-9]{1,30}")
# A Graph path: segments of word characters only (no '..', '|', '#', '?', newline).
GRAPH_PATH = re.compile(r"(?:[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*)?")
# A field name, optionally with a nested selection such as creative{id,name}.
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\{[A-Za-z0-9_,{}]*\})?")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ATTRIBUTION_WINDOW = re.compile(r"[A-Za-z0-9_]+")
INSIGHTS_LEVELS = ("account", "campaign", "adset", "ad")


def account_id(value: object) -> str:
    try:
        return validate_account_id(value)
    except InvalidPartitionKey as exc:
        raise MetaInputError(str(exc)) from None


def object_id(value: object, *, source: str = "object id") -> str:
    if isinstance(value, str) and (OBJECT_ID.fullmatch(value) or value.startswith("act_")):
        if value.startswith("act_"):
            return account_id(value)
        return value
    raise MetaInputError(f"Invalid {source} {value!r}: expected digits (or act_<digits>)")


def graph_path(path: object) -> str:
    """A relative Graph path such as ``act_1/ads``; anything else is refused."""
    if not isinstance(path, str):
        raise MetaInputError(f"Invalid Graph path {path!r}")
    stripped = path.strip("/") if path.strip() == path else None
    if stripped is None or not GRAPH_PATH.fullmatch(stripped):
        raise MetaInputError(
            f"Invalid Graph path {path!r}: only letters, digits, '_' and '/' are allowed"
        )
    return stripped


def fields(values: Sequence[str], *, source: str = "field") -> list[str]:
    if isinstance(values, str):
        raise MetaInputError(f"{source}s must be a list of names, not the string {values!r}")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not FIELD.fullmatch(value) or _unbalanced(value):
            raise MetaInputError(f"Invalid {source} {value!r}: expected a Graph field name")
        if value not in out:
            out.append(value)
    if not out:
        raise MetaInputError(f"At least one {source} is required")
    return out


def _unbalanced(value: str) -> bool:
    depth = 0
    for char in value:
        depth += char == "{"
        depth -= char == "}"
        if depth < 0:
            return True
    return depth != 0


def identifiers(
    values: Sequence[str], *, source: str, pattern: re.Pattern[str] = IDENTIFIER
) -> list[str]:
    if isinstance(values, str):
        raise MetaInputError(f"{source} must be a list of names, not the string {values!r}")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise MetaInputError(f"Invalid {source} entry {value!r}: expected a name")
        out.append(value)
    return out


def months_back(day: dt.date, months: int) -> dt.date:
    total = day.year * 12 + (day.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    # Clamp the day for shorter months (31 March minus one month is 28/29 February).
    for candidate in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def date_range(since: object, until: object, *, today: dt.date) -> tuple[dt.date, dt.date]:
    """``since``..``until`` inclusive, not reversed, not in the future, within 37 months."""
    for name, value in (("since", since), ("until", until)):
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise MetaInputError(f"Invalid {name} {value!r}: expected a date")
    assert isinstance(since, dt.date) and isinstance(until, dt.date)
    if since > until:
        raise MetaInputError(f"Invalid date range: since {since} is after until {until}")
    # Accounts ahead of UTC can already be on tomorrow's local day.
    latest = today + dt.timedelta(days=1)
    if until > latest:
        raise MetaInputError(f"Invalid date range: until {until} is in the future (today {today})")
    earliest = months_back(today, MAX_HISTORY_MONTHS)
    if since < earliest:
        raise MetaInputError(
            f"Invalid date range: since {since} is more than {MAX_HISTORY_MONTHS} months ago "
            f"(Meta serves insights from {earliest} on)"
        )
    return since, until
