"""``python -m meta_pipeline_tests.promises.resume RUN_ID``: re-execute a run from failure.

What the UI's "re-execute from failure" does, in a process of its own so a test can
SIGKILL a resumed run too. The step runs in this process (in-process executor), so one
process group holds the whole run. Exit code 0 when the re-execution succeeded.
"""

from __future__ import annotations

import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from meta_pipeline_tests.assets.conftest import ROOT

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def main(run_id: str) -> int:
    with dg.DagsterInstance.get() as instance:
        parent = instance.get_run_by_id(run_id)
        assert parent is not None
        repository = ReconstructableRepository.for_module(
            "meta_pipeline.definitions", "defs", working_directory=str(ROOT)
        )
        tags = {k: v for k, v in parent.tags.items() if k.startswith("dagster/partition")}
        result = dg.execute_job(
            repository.get_reconstructable_job(parent.job_name),
            instance=instance,
            run_config=IN_PROCESS,
            tags=tags,
            reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
            raise_on_error=False,
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
