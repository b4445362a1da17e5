"""Daily ad-level insights per account and local day, and a small downstream rollup."""

from collections.abc import Iterator
from decimal import Decimal

import dagster as dg

from meta_pipeline.assets.checks import (
    SpendTotals,
    common_results,
    insights_check_specs,
    reconciliation_result,
)
from meta_pipeline.assets.common import (
    BACKFILL_POLICY,
    GROUP,
    extraction_asset,
    fail_fast_on_permanent_errors,
    partition_check_results,
    step_partitions,
)
from meta_pipeline.assets.sources import (
    AnnotatedSource,
    ComputedSource,
    SourceResult,
    fingerprint_of,
)
from meta_pipeline.assets.windows import account_zone, is_settled, window_extras
from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.pages import JsonDict, RequestStats
from meta_pipeline.partitions import AccountDay, account_day_partitions
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.settings import ExtractionSettings

INSIGHTS_KEY = dg.AssetKey([GROUP, "insights"])


@extraction_asset(
    INSIGHTS_KEY,
    "Ad-level insights rows (time_increment=1) for the account's local day, every ad "
    "including deleted and archived ones. Marked final once out of the attribution window.",
    insights_check_specs(INSIGHTS_KEY),
)
def insights(
    context: dg.AssetExecutionContext,
    meta: MetaAdsClient,
    settings: ExtractionSettings,
    io_manager: dg.ResourceParam[MetaGCSIOManager],
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    with fail_fast_on_permanent_errors():
        parts = step_partitions(context)
        sources = {}
        for part in parts:
            zone = account_zone(meta, part.account_id)
            source = meta.insights_source(
                part.account_id,
                since=part.day,
                until=part.day,
                level="ad",
                fields=settings.insights_fields,
                breakdowns=settings.insights_breakdowns,
                action_attribution_windows=settings.action_attribution_windows,
                use_async=settings.use_async_insights,
            )
            extras = {
                **window_extras(part.day, zone),
                "final": is_settled(part.day, zone, settings.attribution_lookback_days),
                "attribution_lookback_days": settings.attribution_lookback_days,
            }
            sources[part.partition_key] = AnnotatedSource.wrap(source, extras)
    yield dg.Output(sources)
    yield from partition_check_results(
        context, parts, lambda part: _insights_checks(meta, settings, io_manager, part)
    )


def _insights_checks(
    meta: MetaAdsClient,
    settings: ExtractionSettings,
    io_manager: MetaGCSIOManager,
    part: AccountDay,
) -> Iterator[dg.AssetCheckResult]:
    # The partition is read back once: unique keys and the reconciliation sums together.
    totals = SpendTotals()
    yield from common_results(
        io_manager.store,
        INSIGHTS_KEY,
        part.partition_key,
        settings.min_accuracy,
        completeness=False,
        totals=totals,
    )
    yield reconciliation_result(
        INSIGHTS_KEY,
        totals,
        meta,
        part.account_id,
        part.day,
        settings.reconciliation_tolerance,
    )


CAMPAIGN_SPEND_KEY = dg.AssetKey([GROUP, "daily_campaign_spend"])


def campaign_spend(rows: Iterator[JsonDict]) -> list[JsonDict]:
    """Spend, impressions and clicks per campaign and day, summed exactly (Decimal)."""
    totals: dict[tuple[str, str], dict[str, Decimal]] = {}
    for row in rows:
        key = (str(row.get("campaign_id")), str(row.get("date_start")))
        bucket = totals.setdefault(
            key, {"spend": Decimal(0), "impressions": Decimal(0), "clicks": Decimal(0)}
        )
        for column in bucket:
            bucket[column] += Decimal(str(row.get(column) or "0"))
    return [
        {
            "campaign_id": campaign_id,
            "date": day,
            "spend": f"{sums['spend']:.2f}",
            "impressions": int(sums["impressions"]),
            "clicks": int(sums["clicks"]),
        }
        for (campaign_id, day), sums in sorted(totals.items())
    ]


@dg.asset(
    key=CAMPAIGN_SPEND_KEY,
    partitions_def=account_day_partitions,
    # Each day's rows are read from its committed meta/insights partition, one day at a time.
    deps=[INSIGHTS_KEY],
    group_name=GROUP,
    kinds={"gcs"},
    backfill_policy=BACKFILL_POLICY,
    description="Daily spend, impressions and clicks per campaign, read back from meta/insights.",
)
def daily_campaign_spend(
    context: dg.AssetExecutionContext, io_manager: dg.ResourceParam[MetaGCSIOManager]
) -> dict[str, ComputedSource]:
    def spend_of(partition_key: str) -> ComputedSource:
        def compute() -> SourceResult:
            rows = io_manager.store.iter_records(INSIGHTS_KEY, partition_key)
            return campaign_spend(rows), RequestStats(), []

        return ComputedSource(
            compute=compute,
            fingerprint=fingerprint_of({"derived_from": INSIGHTS_KEY.to_user_string()}),
            api_version="",
            primary_key=("campaign_id", "date"),
            manifest_extras={"derived_from": INSIGHTS_KEY.to_user_string()},
        )

    return {part.partition_key: spend_of(part.partition_key) for part in step_partitions(context)}


insights_assets = [insights, daily_campaign_spend]
