"""Jobs: the extraction over account x day partitions, its partial refreshes, the ledger replay."""

from typing import Any

import dagster as dg

from meta_pipeline.assets.insights import CAMPAIGN_SPEND_KEY, INSIGHTS_KEY
from meta_pipeline.assets.objects import ADCREATIVES_KEY, ADS_KEY
from meta_pipeline.io_managers.gcs import MetaGCSIOManager
from meta_pipeline.ledger import replay_ledgers
from meta_pipeline.partitions import account_day_partitions
from meta_pipeline.resources.meta_api import MetaAdsClient

EXTRACTED_ASSET_KEYS = [
    dg.AssetKey(["meta", name])
    for name in ("ad_accounts", "campaigns", "adsets", "ads", "adcreatives", "insights")
]

# Step failures: a few spaced-out retries with full jitter, so parallel runs hitting the same
# throttled account do not retry in lockstep. The client already retries each request; this
# covers what escapes it (a report that never completes, a dropped connection mid-write), and
# each retry resumes from the partition's checkpoint. Crashed runs are retried by the instance
# (dagster.yaml run_retries, which leaves step failures to this policy).
STEP_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
)

extract_job = dg.define_asset_job(
    "meta_extract",
    selection=dg.AssetSelection.groups("meta"),
    partitions_def=account_day_partitions,
    op_retry_policy=STEP_RETRY_POLICY,
    description="Every Meta asset for the selected account x day partitions.",
)

OBJECT_REFRESH_KEYS = [
    dg.AssetKey(["meta", "campaigns"]),
    dg.AssetKey(["meta", "adsets"]),
    ADS_KEY,
    ADCREATIVES_KEY,
]

objects_refresh_job = dg.define_asset_job(
    "meta_objects_refresh",
    selection=dg.AssetSelection.assets(*OBJECT_REFRESH_KEYS),
    partitions_def=account_day_partitions,
    op_retry_policy=STEP_RETRY_POLICY,
    description="Campaigns, ad sets, ads and creatives of account x day partitions that changed.",
)

insights_refresh_job = dg.define_asset_job(
    "meta_insights_refresh",
    selection=dg.AssetSelection.assets(INSIGHTS_KEY, CAMPAIGN_SPEND_KEY),
    partitions_def=account_day_partitions,
    op_retry_policy=STEP_RETRY_POLICY,
    description="Insights (and the spend rollup) of days still inside the attribution window.",
)


@dg.op(
    description="Re-issue the ledger's failed requests and fold what succeeds into its partition."
)
def replay_failed_requests(
    context: dg.OpExecutionContext,
    meta: MetaAdsClient,
    io_manager: dg.ResourceParam[MetaGCSIOManager],
) -> None:
    summary = replay_ledgers(meta, io_manager.store, EXTRACTED_ASSET_KEYS, run_id=context.run_id)
    for outcome in summary.outcomes:
        if outcome.committed:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=dg.AssetKey.from_user_string(outcome.asset),
                    partition=outcome.partition_key,
                    description="Ledger replay folded recovered records into the partition",
                    metadata={
                        "ledger_replayed": True,
                        "recovered_requests": outcome.recovered_requests,
                        "recovered_records": outcome.recovered_records,
                        "still_failing": outcome.still_failing,
                    },
                )
            )
    context.log.info(
        f"Ledger replay: {summary.reissued} request(s) re-issued, "
        f"{summary.recovered_requests} recovered, {summary.still_failing} still failing"
    )


@dg.job(description="Replay every ledger of failed requests (meta-pipeline retry-failed).")
def retry_failed_requests_job() -> None:
    replay_failed_requests()


jobs: list[Any] = [
    extract_job,
    objects_refresh_job,
    insights_refresh_job,
    retry_failed_requests_job,
]
