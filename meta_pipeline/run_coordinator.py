"""The run queue, with every run tagged with the ad account it extracts.

Meta rate-limits per ad account, so the instance allows one running materialization per
account: ``tag_concurrency_limits`` on ``meta_pipeline/account``. Dagster tags a
one-partition run with ``dagster/partition/account``, but a range run (a backfill batching an
account's days, or ``--partition-range``) carries only the range's first and last keys, and
adding ``dagster/partition/account`` to it would make Dagster read the run as a single
partition. So this queue sets its own tag on both kinds before a run is queued.
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

from meta_pipeline.partitions import (
    ACCOUNT_DIMENSION,
    InvalidPartitionKey,
    parse_partition_key,
    validate_account_key,
)

# The tag the one-run-per-account limit keys on (dagster.yaml, deploy/dagster.yaml, Helm).
ACCOUNT_TAG = "meta_pipeline/account"
_PARTITION_ACCOUNT_TAG = f"{MULTIDIMENSIONAL_PARTITION_PREFIX}{ACCOUNT_DIMENSION}"


def account_of_run(tags: Mapping[str, str]) -> str | None:
    """The one ad account a run extracts, from its partition or range tags; else ``None``."""
    start = tags.get(ASSET_PARTITION_RANGE_START_TAG)
    end = tags.get(ASSET_PARTITION_RANGE_END_TAG)
    try:
        if start is None or end is None:
            partition_account = tags.get(_PARTITION_ACCOUNT_TAG)
            return None if partition_account is None else validate_account_key(partition_account)
        # The range first: a job backfill's range runs also carry the partition tags of the
        # backfill's first partition, whatever account the range is (seen with Dagster 1.13).
        first, last = parse_partition_key(start), parse_partition_key(end)
    except InvalidPartitionKey:
        return None  # the run fails on its own, naming the key; nothing to tag
    # One day of several accounts (Dagster groups a backfill by the dimension with fewer
    # keys) has no single account. Each partition's commit guard still holds.
    return first.account_id if first.account_id == last.account_id else None


def account_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``{meta_pipeline/account: act_..}`` to add to a run, or ``{}``."""
    account = account_of_run(tags)
    if account is None or tags.get(ACCOUNT_TAG) == account:
        return {}
    return {ACCOUNT_TAG: account}


class AccountTaggingRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` that tags each run with its ad account (same config)."""

    def submit_run(self, context: SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        extra = account_tags(run.tags)
        if extra:
            self._instance.add_run_tags(run.run_id, extra)
            run = run.with_tags({**run.tags, **extra})
            context = SubmitRunContext(run, context.workspace)
        return super().submit_run(context)
