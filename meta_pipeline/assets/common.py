"""What every extraction asset shares: group, kinds, the Meta API pool and its partitions.

A step materializes one partition, or a range of them when a backfill batches several days
of an account into one run (``BACKFILL_POLICY``): the assets return one page source per
partition and report one set of check results per partition either way.
"""

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
)

from meta_pipeline.pages import Page
from meta_pipeline.partitions import (
    AccountDay,
    InvalidPartitionKey,
    account_day_partitions,
    parse_partition_key,
)
from meta_pipeline.resources.errors import MetaConfigError, MetaInputError, MetaPermanentError
from meta_pipeline.resources.redact import redact

GROUP = "meta"
# Every asset that calls Meta runs in this pool, so total concurrent calls stay capped.
POOL = "meta_api"
KINDS = {"meta", "gcs"}
# A backfill runs each account's days in one run (Dagster groups a multi-partition backfill
# by one dimension): the run's fixed cost (launch, resources, one step per asset) is paid
# once per account, not per day, and the account's days run in series, as its rate limit
# wants. Each partition is still checkpointed and committed on its own, so a long run that
# dies keeps what it committed. Every asset must share the policy to share the run; it also
# lets ``dagster asset materialize --partition-range`` run a range.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# Known and relied on (and tested: meta_pipeline_tests/assets/test_range_runs.py); the beta
# notice would otherwise print on every load of the code location, once per asset.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def extraction_asset(
    key: dg.AssetKey,
    description: str,
    check_specs: Sequence[dg.AssetCheckSpec],
    **extra: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """``@dg.asset`` for an account x day asset that reads the Meta API."""
    return dg.asset(
        key=key,
        partitions_def=account_day_partitions,
        check_specs=check_specs,
        group_name=GROUP,
        kinds=KINDS,
        pool=POOL,
        backfill_policy=BACKFILL_POLICY,
        description=description,
        **extra,
    )


def step_partitions(context: dg.AssetExecutionContext) -> list[AccountDay]:
    """The partitions this step materializes, validated, in key order (account, then day)."""
    tags = context.run.tags
    stray = sorted(tag for tag in tags if tag.startswith(MULTIDIMENSIONAL_PARTITION_PREFIX))
    if ASSET_PARTITION_RANGE_START_TAG in tags and stray:
        # Dagster 1.13's job backfills copy the first partition's dimension tags onto every
        # range run, and those win over the range: each run would silently redo one partition.
        raise dg.Failure(
            description=(
                f"Run {context.run.run_id} carries a partition range and the partition tags "
                f"{', '.join(f'{t}={tags[t]}' for t in stray)}, so Dagster would materialize "
                "that one partition instead of the range. Backfills launched from a job's "
                "page do this with Dagster 1.13: launch the backfill from the asset graph or "
                "an asset's page (Materialize, select the partitions) instead."
            ),
            allow_retries=False,
        )
    return sorted(
        (parse_partition_key(key) for key in context.partition_keys),
        key=lambda part: part.partition_key,
    )


def partition_check_results(
    context: dg.AssetExecutionContext,
    parts: Sequence[AccountDay],
    results_of: Callable[[AccountDay], Iterable[dg.AssetCheckResult]],
) -> Iterator[dg.AssetCheckResult]:
    """Each partition's check results, recorded against that partition.

    A one-partition step yields them as they are. A range step logs each as an
    ``AssetCheckEvaluation`` on its own partition (``AssetCheckResult`` can only name the
    step's single partition) and then yields, per check, one result for the whole range
    that fails if any partition failed, listing which.
    """
    if len(parts) == 1:
        yield from results_of(parts[0])
        return
    failed: dict[tuple[dg.AssetKey, str], list[str]] = defaultdict(list)
    checked: dict[tuple[dg.AssetKey, str], int] = defaultdict(int)
    severities: dict[tuple[dg.AssetKey, str], dg.AssetCheckSeverity] = {}
    for part in parts:
        for result in results_of(part):
            asset_key = dg.AssetKey.from_coercible(result.asset_key or context.asset_key)
            name = result.check_name or ""
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=name,
                    passed=result.passed,
                    metadata=result.metadata,
                    severity=result.severity,
                    description=result.description,
                    partition=part.partition_key,
                )
            )
            checked[(asset_key, name)] += 1
            severities[(asset_key, name)] = result.severity
            if not result.passed:
                failed[(asset_key, name)].append(part.partition_key)
    for (asset_key, name), count in checked.items():
        bad = failed.get((asset_key, name), [])
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=not bad,
            severity=severities[(asset_key, name)],
            description=f"{count - len(bad)} of {count} partition(s) of this run passed",
            metadata={
                "partitions_checked": dg.MetadataValue.int(count),
                "partitions_failed": dg.MetadataValue.int(len(bad)),
                "failed_partitions": dg.MetadataValue.text(", ".join(bad[:50])),
            },
        )


# What retrying cannot fix: a bad token, a missing permission, an invalid request, bad input.
PERMANENT_ERRORS = (MetaPermanentError, MetaInputError, MetaConfigError, InvalidPartitionKey)


def permanent_failure(error: Exception) -> dg.Failure:
    """A step failure the RetryPolicy must not retry (no retry storms on permanent errors)."""
    metadata: dict[str, Any] = {"error_class": type(error).__name__}
    if isinstance(error, MetaPermanentError):
        metadata.update(
            {
                "code": error.code if error.code is not None else "none",
                "subcode": error.subcode if error.subcode is not None else "none",
                "fbtrace_id": error.fbtrace_id or "none",
            }
        )
    return dg.Failure(description=redact(str(error)), metadata=metadata, allow_retries=False)


@contextmanager
def fail_fast_on_permanent_errors() -> Iterator[None]:
    try:
        yield
    except PERMANENT_ERRORS as error:
        raise permanent_failure(error) from error


def fail_fast_pages(pages: Iterable[Page]) -> Iterator[Page]:
    """The same for errors raised while the IO manager consumes a page stream."""
    with fail_fast_on_permanent_errors():
        yield from pages
