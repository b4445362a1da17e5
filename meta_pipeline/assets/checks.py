"""Asset checks of a committed partition, computed from what GCS holds (the manifest and its objects)."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

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


def duplicate_keys(
    records: Iterable[JsonDict], primary_key: Sequence[str]
) -> tuple[int, list[str]]:
    """How many records repeat an earlier primary key, and a few examples."""
    seen: set[str] = set()
    duplicates = 0
    examples: list[str] = []
    for record in records:
        values = [record.get(column) for column in primary_key]
        # One compact string per key (the set holds every key of the partition): string
        # values joined by a control character, cheaper than JSON; anything else (numbers,
        # missing values, a value holding the separator) as JSON, which never starts with \x1e.
        if all(type(v) is str and "\x1f" not in v for v in values):
            value = "\x1e" + "\x1f".join(map(str, values))
        else:
            value = json.dumps(values, default=str)
        if value in seen:
            duplicates += 1
            if len(examples) < 5:
                examples.append(json.dumps(values, default=str))
        else:
            seen.add(value)
    return duplicates, examples


def unique_keys_result(
    key: dg.AssetKey, manifest: Manifest, records: Iterable[JsonDict]
) -> dg.AssetCheckResult:
    duplicates, examples = duplicate_keys(records, manifest.primary_key)
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
            self.spend += _decimal(row.get("spend"))
            self.impressions += int(_decimal(row.get("impressions")))
            yield row


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
        for _ in totals.tally(records):
            pass
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
    records = store.iter_manifest_records(location, manifest)
    yield unique_keys_result(key, manifest, totals.tally(records) if totals else records)
    yield accuracy_result(key, manifest, min_accuracy)
