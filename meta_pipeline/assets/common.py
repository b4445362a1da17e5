"""What every extraction asset shares: group, kinds, the Meta API pool and its partitions."""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from meta_pipeline.partitions import account_day_partitions

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
