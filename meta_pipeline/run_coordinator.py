"""The run queue, with the ad account tagged on range runs as on single-partition runs.

Meta rate-limits per ad account, so the instance allows one running materialization per
account (``tag_concurrency_limits`` on ``dagster/partition/account``). Dagster tags a
one-partition run with its account, but a range run (a backfill batching an account's
days, or ``--partition-range``) carries only the range's first and last keys. This queue
adds the account tag to a range run of one account before the run is queued, so the
limit holds for both.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
)

from meta_pipeline.partitions import ACCOUNT_DIMENSION, InvalidPartitionKey, parse_partition_key

ACCOUNT_TAG = f"{MULTIDIMENSIONAL_PARTITION_PREFIX}{ACCOUNT_DIMENSION}"


def range_account_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``{dagster/partition/account: act_..}`` for a range run within one account, else ``{}``."""
    if ACCOUNT_TAG in tags:
        return {}
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start is None or end is None:
        return {}
    try:
        first, last = parse_partition_key(start), parse_partition_key(end)
    except InvalidPartitionKey:
        return {}  # the run fails on its own, naming the key; nothing to tag
    if first.account_id != last.account_id:
        # One day of several accounts (Dagster groups a backfill by the dimension with fewer
        # keys): no single account to tag. Each partition's commit guard still holds.
        return {}
    return {ACCOUNT_TAG: first.account_id}


class AccountTaggingRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that tags range runs with their ad account (same config)."""

    def submit_run(self, context: SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        extra = range_account_tags(run.tags)
        if extra:
            self._instance.add_run_tags(run.run_id, extra)
            run = run.with_tags({**run.tags, **extra})
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
