"""Re-execute a run of the implicit asset job, as the UI's "re-execute from failure" does."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

ROOT = Path(__file__).resolve().parents[2]


def reexecute_from_failure(instance: dg.DagsterInstance, run_id: str) -> dg.JobExecutionResult:
    parent = instance.get_run_by_id(run_id)
    assert parent is not None
    repository = ReconstructableRepository.for_module(
        "meta_pipeline.definitions", "defs", working_directory=str(ROOT)
    )
    # The partition (or a range run's first and last keys) the parent materialized.
    tags = {
        k: v
        for k, v in parent.tags.items()
        if k.startswith(("dagster/partition", "dagster/asset_partition_range"))
    }
    return dg.execute_job(
        repository.get_reconstructable_job(parent.job_name),
        instance=instance,
        tags=tags,
        reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        raise_on_error=False,
    )
