"""Ad accounts, campaigns, ad sets, ads and ad creatives, by account and local day.

A partition holds the objects whose ``updated_time`` falls on the account's
local day, every status included (DELETED and ARCHIVED too), so the union of an
account's partitions, latest ``updated_time`` winning, is its current state.

Two edges cannot be filtered by time and are handled as follows:
- ``meta/ad_accounts``: a snapshot of the account's details, taken when the
  partition is materialized.
- ``meta/adcreatives``: creatives have no ``updated_time`` and cannot be edited
  once created; an ad that switches creative gets a new ``updated_time``. So a
  day's partition holds the creatives referenced by the ads updated that day,
  read by id. A creative Meta refuses to return is quarantined in the ledger.
"""

from collections.abc import Callable, Iterator

import dagster as dg

from meta_pipeline.assets.checks import common_results, object_check_specs
from meta_pipeline.assets.common import (
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
    stats_delta,
    utc_now_iso,
)
from meta_pipeline.assets.windows import (
    ACCOUNT_DETAIL_FIELDS,
    account_zone,
    local_day_bounds,
    window_extras,
)
from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.pages import JsonDict, LedgerEntry, RequestStats
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.settings import ExtractionSettings

CAMPAIGN_FIELDS = (
    "id", "account_id", "name", "objective", "status", "effective_status", "configured_status",
    "buying_type", "daily_budget", "lifetime_budget", "budget_remaining", "start_time",
    "stop_time", "created_time", "updated_time",
)  # fmt: skip
ADSET_FIELDS = (
    "id", "account_id", "campaign_id", "name", "status", "effective_status", "configured_status",
    "daily_budget", "lifetime_budget", "budget_remaining", "billing_event", "optimization_goal",
    "bid_strategy", "start_time", "end_time", "targeting", "created_time", "updated_time",
)  # fmt: skip
AD_FIELDS = (
    "id", "account_id", "campaign_id", "adset_id", "name", "status", "effective_status",
    "configured_status", "creative", "created_time", "updated_time",
)  # fmt: skip
CREATIVE_FIELDS = (
    "id", "account_id", "name", "title", "body", "object_type", "status", "thumbnail_url",
    "object_story_spec", "call_to_action_type",
)  # fmt: skip

ADS_KEY = dg.AssetKey([GROUP, "ads"])


def _object_asset(edge: str, fields: tuple[str, ...], description: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([GROUP, edge])

    @extraction_asset(key, description, object_check_specs(key))
    def _extract(
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
                start, end = local_day_bounds(part.day, zone)
                source = meta.edge_source(
                    part.account_id, edge, fields, updated_since=start, updated_until=end
                )
                sources[part.partition_key] = AnnotatedSource.wrap(
                    source, window_extras(part.day, zone)
                )
        yield dg.Output(sources)
        yield from partition_check_results(
            context,
            parts,
            lambda part: common_results(
                io_manager.store, key, part.partition_key, settings.min_accuracy, completeness=True
            ),
        )

    return _extract


campaigns = _object_asset(
    "campaigns", CAMPAIGN_FIELDS, "Campaigns updated on the account's local day, all statuses."
)
adsets = _object_asset(
    "adsets", ADSET_FIELDS, "Ad sets updated on the account's local day, all statuses."
)
ads = _object_asset("ads", AD_FIELDS, "Ads updated on the account's local day, all statuses.")

AD_ACCOUNTS_KEY = dg.AssetKey([GROUP, "ad_accounts"])


@extraction_asset(
    AD_ACCOUNTS_KEY,
    "The ad account's details (time zone, currency, status), as of materialization.",
    object_check_specs(AD_ACCOUNTS_KEY),
)
def ad_accounts(
    context: dg.AssetExecutionContext,
    meta: MetaAdsClient,
    settings: ExtractionSettings,
    io_manager: dg.ResourceParam[MetaGCSIOManager],
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    parts = step_partitions(context)
    snapshots: dict[str, JsonDict] = {}

    def snapshot_of(account_id: str) -> Callable[[], SourceResult]:
        def snapshot() -> SourceResult:
            # One request per account and run: every day of a range gets the same snapshot.
            if account_id in snapshots:
                return [snapshots[account_id]], RequestStats(), []
            before = meta.stats.copy()
            snapshots[account_id] = meta.get_account(account_id, ACCOUNT_DETAIL_FIELDS)
            return [snapshots[account_id]], stats_delta(before, meta.stats), []

        return snapshot

    fingerprint = fingerprint_of(
        {"path": "/{account_id}", "fields": ACCOUNT_DETAIL_FIELDS, "v": meta.api_version}
    )
    yield dg.Output(
        {
            part.partition_key: ComputedSource(
                compute=snapshot_of(part.account_id),
                fingerprint=fingerprint,
                api_version=meta.api_version,
                primary_key=("id",),
                manifest_extras={"endpoint": f"/{part.account_id}", "snapshot": True},
            )
            for part in parts
        }
    )
    yield from partition_check_results(
        context,
        parts,
        lambda part: common_results(
            io_manager.store,
            AD_ACCOUNTS_KEY,
            part.partition_key,
            settings.min_accuracy,
            completeness=True,
        ),
    )


ADCREATIVES_KEY = dg.AssetKey([GROUP, "adcreatives"])


def _creative_ids(ad_records: Iterator[JsonDict]) -> list[str]:
    ids: dict[str, None] = {}
    for ad in ad_records:
        creative = ad.get("creative")
        if isinstance(creative, dict) and creative.get("id"):
            ids[str(creative["id"])] = None
    return sorted(ids)


@extraction_asset(
    ADCREATIVES_KEY,
    "Creatives referenced by the ads updated on the account's local day (creatives are "
    "immutable and have no updated_time), read by id.",
    object_check_specs(ADCREATIVES_KEY),
    # Each day's ads are read from its committed meta/ads partition, one day at a time.
    deps=[ADS_KEY],
)
def adcreatives(
    context: dg.AssetExecutionContext,
    meta: MetaAdsClient,
    settings: ExtractionSettings,
    io_manager: dg.ResourceParam[MetaGCSIOManager],
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    parts = step_partitions(context)
    store = io_manager.store
    yield dg.Output(
        {
            part.partition_key: _creatives_source(
                meta, _creative_ids(store.iter_records(ADS_KEY, part.partition_key))
            )
            for part in parts
        }
    )
    yield from partition_check_results(
        context,
        parts,
        lambda part: common_results(
            store, ADCREATIVES_KEY, part.partition_key, settings.min_accuracy, completeness=True
        ),
    )


def _creatives_source(meta: MetaAdsClient, ids: list[str]) -> ComputedSource:
    def read_creatives() -> SourceResult:
        before = meta.stats.copy()
        found = meta.get_objects(ids, CREATIVE_FIELDS)
        stats = stats_delta(before, meta.stats)
        missing = [i for i in ids if i not in found]
        failures = [
            LedgerEntry(
                kind="object",
                request={
                    "method": "GET",
                    "path": i,
                    "params": {"fields": ",".join(CREATIVE_FIELDS)},
                },
                code=None,
                subcode=None,
                message="Meta did not return this creative",
                fbtrace_id=None,
                recorded_at=utc_now_iso(),
            )
            for i in missing
        ]
        # Each creative Meta would not return is one failed logical read.
        stats.logical_requests += len(missing)
        if missing:
            stats.record_failure("missing_object")
        return [found[i] for i in ids if i in found], stats, failures

    return ComputedSource(
        compute=read_creatives,
        fingerprint=fingerprint_of(
            {"path": "/?ids=", "ids": ids, "fields": CREATIVE_FIELDS, "v": meta.api_version}
        ),
        api_version=meta.api_version,
        primary_key=("id",),
        manifest_extras={"endpoint": "/?ids=", "creatives_requested": len(ids)},
    )


object_assets = [ad_accounts, campaigns, adsets, ads, adcreatives]
