"""Re-execute a run of the implicit asset job, as the UI's "re-execute from failure" does."""

from __future__ import annotations

import dagster as dg


def implicit_asset_job() -> dg.JobDefinition:
    from meta_pipeline.definitions import defs

    return defs.resolve_implicit_global_asset_job_def()


def reexecute_from_failure(instance: dg.DagsterInstance, run_id: str) -> dg.JobExecutionResult:
    parent = instance.get_run_by_id(run_id)
    assert parent is not None
    tags = {k: v for k, v in parent.tags.items() if k.startswith("dagster/partition")}
    return dg.execute_job(
        dg.reconstructable(implicit_asset_job),
        instance=instance,
        tags=tags,
        reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        raise_on_error=False,
    )
