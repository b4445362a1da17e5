"""Asset checks of a committed partition, computed from what GCS holds (the manifest and its objects)."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import dagster as dg

from meta_pipeline.io_managers.manifest import Manifest
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.pages import JsonDict, RequestStats
from meta_pipeline.partitions import account_day_partitions
from meta_pipeline.resources.meta_api import MetaAdsClient

COMPLETE = "complete"
UNIQUE_KEYS = "unique_primary_keys"
ACCURACY = "accuracy"
RECONCILES = "reconciles_with_account_totals"


def _spec(name: str, *, asset: dg.AssetKey, description: str) -> dg.AssetCheckSpec:
    # Partitioned like the asset, so each result is recorded against its partition
    # (a preview feature in Dagster 1.13, and the only way to get per-partition results).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, description=description, partitions_def=account_day_partitions
        )


def object_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        _spec(
            COMPLETE,
            asset=key,
            description="Records written equal the API's summary.total_count for the partition",
        ),
        _spec(UNIQUE_KEYS, asset=key, description="No primary key appears twice"),
        _spec(
            ACCURACY,
            asset=key,
            description="Share of logical requests that succeeded is at or above min_accuracy",
        ),
    ]


def insights_check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        _spec(
            UNIQUE_KEYS,
            asset=key,
            description="No (ad_id, date_start, breakdowns...) key appears twice",
        ),
        _spec(
            ACCURACY,
            asset=key,
            description="Share of logical requests that succeeded is at or above min_accuracy",
        ),
        _spec(
            RECONCILES,
            asset=key,
            description="Ad-level spend and impressions add up to the account-level figures",
        ),
    ]


def completeness_result(key: dg.AssetKey, manifest: Manifest) -> dg.AssetCheckResult:
    expected = manifest.api_total_count
    written = manifest.records
    if expected is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=COMPLETE,
            passed=True,
            metadata={"records": written, "api_total_count": "not given by this edge"},
        )
    # A gap fully explained by quarantined requests is a warning: the ledger can replay it.
    explained = written + manifest.ledger_entries >= expected
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=COMPLETE,
        passed=written == expected,
        severity=dg.AssetCheckSeverity.WARN if explained else dg.AssetCheckSeverity.ERROR,
        metadata={
            "records": written,
            "api_total_count": expected,
            "missing": max(expected - written, 0),
            "ledger_entries": manifest.ledger_entries,
        },
    )


class KeyTracker:
    """Primary keys seen so far; counts the records that repeat one, with a few examples."""

    def __init__(self, primary_key: Sequence[str]) -> None:
        self.primary_key = tuple(primary_key)
        self.duplicates = 0
        self.examples: list[str] = []
        # One compact string per key (the sets hold every key of the partition): string
        # values joined by a control character, cheaper than JSON; anything else (numbers,
        # missing values, a value holding the separator) as JSON, in a set of its own.
        self._joined: set[str] = set()
        self._as_json: set[str] = set()

    def add(self, records: Iterable[JsonDict]) -> None:
        primary_key = self.primary_key
        self.add_keys([record.get(column) for column in primary_key] for record in records)

    def add_keys(self, keys: Iterable[Sequence[Any]]) -> None:
        """The primary key values of each record, in primary key order."""
        batch = keys if isinstance(keys, list) else list(keys)
        separators = len(self.primary_key) - 1
        if batch and separators >= 0:
            # The usual batch, all string values, no separator in them, no key seen before:
            # joined, counted and compared in C. Anything else goes record by record.
            try:
                joined = list(map("\x1f".join, batch))
            except TypeError:
                joined = None
            if joined is not None and "".join(joined).count("\x1f") == separators * len(joined):
                fresh = set(joined)
                if len(fresh) == len(joined) and self._joined.isdisjoint(fresh):
                    self._joined |= fresh
                    return
        self._add_each(batch)

    def _add_each(self, keys: Iterable[Sequence[Any]]) -> None:
        joined_seen = self._joined
        separators = len(self.primary_key) - 1
        for values in keys:
            try:
                joined = "\x1f".join(values)
            except TypeError:  # a value that is not a string
                joined = None
            if joined is not None and joined.count("\x1f") == separators:
                if joined in joined_seen:
                    self._repeat(values)
                else:
                    joined_seen.add(joined)
                continue
            value = json.dumps(list(values), default=str)
            if value in self._as_json:
                self._repeat(values)
            else:
                self._as_json.add(value)

    def _repeat(self, values: Sequence[Any]) -> None:
        self.duplicates += 1
        if len(self.examples) < 5:
            self.examples.append(json.dumps(list(values), default=str))


def duplicate_keys(
    records: Iterable[JsonDict], primary_key: Sequence[str]
) -> tuple[int, list[str]]:
    """How many records repeat an earlier primary key, and a few examples."""
    tracker = KeyTracker(primary_key)
    tracker.add(records)
    return tracker.duplicates, tracker.examples


def unique_keys_result(
    key: dg.AssetKey, manifest: Manifest, records: Iterable[JsonDict] | KeyTracker
) -> dg.AssetCheckResult:
    """From ``records``, or from a tracker that has already seen them."""
    if isinstance(records, KeyTracker):
        tracker = records
    else:
        tracker = KeyTracker(manifest.primary_key)
        tracker.add(records)
    duplicates, examples = tracker.duplicates, tracker.examples
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=UNIQUE_KEYS,
        passed=duplicates == 0,
        metadata={
            "primary_key": ", ".join(manifest.primary_key),
            "duplicates": duplicates,
            "examples": ", ".join(examples) or "none",
        },
    )


def accuracy_result(
    key: dg.AssetKey, manifest: Manifest, min_accuracy: float
) -> dg.AssetCheckResult:
    stats = RequestStats.from_dict(manifest.request_stats)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=ACCURACY,
        passed=stats.accuracy >= min_accuracy,
        metadata={
            "accuracy": float(stats.accuracy),
            "min_accuracy": min_accuracy,
            "logical_requests": stats.logical_requests,
            "failed_requests": stats.failed_requests,
            "ledger_entries": manifest.ledger_entries,
        },
    )


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value or "0"))
    except InvalidOperation:
        return Decimal(0)


@dataclass
class SpendTotals:
    """Ad-level spend and impressions, summed while another check reads the records."""

    spend: Decimal = Decimal(0)
    impressions: int = 0

    def tally(self, records: Iterable[JsonDict]) -> Iterator[JsonDict]:
        """Pass ``records`` through, adding each to the totals (one read of the partition)."""
        for row in records:
            self.add((row,))
            yield row

    def add(self, records: Iterable[JsonDict]) -> None:
        """Add the records to the totals."""
        self.add_values((row.get("spend"), row.get("impressions")) for row in records)

    def add_columns(self, spends: list[Any], impressions: list[Any]) -> None:
        """Add the records' spend and impressions values, given column by column.

        The usual batch (string values that ``Decimal`` and ``int`` take) is summed in C,
        in record order, to the very sums :meth:`add_values` makes; anything else goes
        record by record.
        """
        spend, total = self.spend, self.impressions
        try:
            if set(map(type, spends)) <= {str} and set(map(type, impressions)) <= {str}:
                spend = sum(map(Decimal, spends), spend)
                total += sum(map(int, impressions))
                self.spend, self.impressions = spend, total
                return
        except (InvalidOperation, ValueError):
            pass
        self.add_values(zip(spends, impressions, strict=True))

    def add_values(self, values: Iterable[Sequence[Any]]) -> None:
        """Add (spend, impressions) of each record: the sums of ``_decimal`` of every value
        (the usual string values take a shortcut to the same Decimal and int)."""
        spend, impressions = self.spend, self.impressions
        for row_spend, row_impressions in values:
            if type(row_spend) is str:
                try:
                    spend += Decimal(row_spend)
                except InvalidOperation:
                    spend += _decimal(row_spend)
            else:
                spend += _decimal(row_spend)
            if type(row_impressions) is str:
                try:
                    impressions += int(row_impressions)
                except ValueError:  # "12.0", "" and the like
                    impressions += int(_decimal(row_impressions))
            else:
                impressions += int(_decimal(row_impressions))
        self.spend, self.impressions = spend, impressions


def reconciliation_result(
    key: dg.AssetKey,
    records: Iterable[JsonDict] | SpendTotals,
    client: MetaAdsClient,
    account_id: str,
    day: dt.date,
    tolerance: float,
) -> dg.AssetCheckResult:
    """Ad-level sums (of ``records``, or already summed) against one account-level request."""
    if isinstance(records, SpendTotals):
        totals = records
    else:
        totals = SpendTotals()
        totals.add(records)
    spend, impressions = totals.spend, totals.impressions
    answer = client.get(
        f"{account_id}/insights",
        {
            "level": "account",
            "fields": "spend,impressions",
            "time_range": json.dumps({"since": day.isoformat(), "until": day.isoformat()}),
            "time_increment": "1",
        },
    )
    rows = answer.get("data") or []
    account_spend = sum((_decimal(r.get("spend")) for r in rows), Decimal(0))
    account_impressions = sum(int(_decimal(r.get("impressions"))) for r in rows)

    def close(ours: Decimal, theirs: Decimal) -> bool:
        return abs(ours - theirs) <= Decimal(str(tolerance)) * max(abs(theirs), Decimal(1))

    passed = close(spend, account_spend) and close(
        Decimal(impressions), Decimal(account_impressions)
    )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=RECONCILES,
        passed=passed,
        metadata={
            "ad_level_spend": float(spend),
            "account_spend": float(account_spend),
            "ad_level_impressions": impressions,
            "account_impressions": account_impressions,
            "tolerance": tolerance,
        },
    )


def common_results(
    store: PartitionStore,
    key: dg.AssetKey,
    partition_key: str,
    min_accuracy: float,
    *,
    completeness: bool,
    totals: SpendTotals | None = None,
) -> Iterator[dg.AssetCheckResult]:
    """Completeness, unique keys and accuracy; ``totals`` also sums spend in the same read."""
    location = store.location(key, partition_key)
    manifest = store.read_manifest_at(location)
    if manifest is None:
        raise RuntimeError(f"{location.manifest_uri} is missing right after the commit")
    if completeness:
        yield completeness_result(key, manifest)
    # One pass over what GCS holds: every object read, checksummed and decoded line by
    # line, only the fields the checks use built into values (keys, and spend and
    # impressions when asked for).
    key_columns = tuple(manifest.primary_key)
    tracker = KeyTracker(key_columns)
    if not key_columns:  # no key (every record after the first repeats it): whole records
        for batch in store.iter_manifest_batches(location, manifest):
            tracker.add(batch)
            if totals is not None:
                totals.add(batch)
    else:
        selections = [key_columns, *((("spend",), ("impressions",)) if totals else ())]
        for selected in store.iter_manifest_selections(location, manifest, selections):
            keys = selected[0]
            # One key column gives bare values: 1-tuples, as every key is a sequence.
            tracker.add_keys(keys if len(key_columns) > 1 else list(zip(keys, strict=True)))
            if totals is not None:
                totals.add_columns(selected[1], selected[2])
    yield unique_keys_result(key, manifest, tracker)
    yield accuracy_result(key, manifest, min_accuracy)
