"""What every extraction asset shares: group, kinds, the Meta API pool and its partitions."""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

from meta_pipeline.pages import Page
from meta_pipeline.partitions import InvalidPartitionKey, account_day_partitions
from meta_pipeline.resources.errors import MetaConfigError, MetaInputError, MetaPermanentError
from meta_pipeline.resources.redact import redact

GROUP = "meta"
# Every asset that calls Meta runs in this pool, so total concurrent calls stay capped.
POOL = "meta_api"
KINDS = {"meta", "gcs"}


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
        description=description,
        **extra,
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
