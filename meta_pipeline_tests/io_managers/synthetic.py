"""A synthetic PageSource (the real contract) and a small Dagster job around the IO manager.

Importable by tests and runnable as ``python -m meta_pipeline_tests.io_managers.synthetic``
(the SIGKILL test runs the job in a child process). Configuration comes from the
environment (``GCS_BUCKET``, ``STORAGE_EMULATOR_HOST``, ``IO_TEST_CHECKPOINT_EVERY``)
and from the asset's run config. (No ``from __future__ import annotations`` here:
Dagster reads asset and config annotations at runtime.)
"""

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.execution.job_execution_result import JobExecutionResult
from dagster_gcp import GCSResource

from meta_pipeline.io_managers import MetaGCSIOManager
from meta_pipeline.pages import JsonDict, LedgerEntry, Page, RequestStats, ResumeRejected
from meta_pipeline.partitions import account_day_partitions

ASSET_KEY = dg.AssetKey(["meta_test", "synthetic"])
PREFIX = "it"
PAGE_SIZE = 5
RECORDS_PER_OBJECT = 10  # two pages per object

# Test hooks for in-process runs: every source the asset builds, and a per-page callback.
OPENED_SOURCES: list["SyntheticPageSource"] = []
PAGE_HOOKS: list[Callable[[int, str], None]] = []


class SourceFailure(RuntimeError):
    """The synthetic API failing mid-stream."""


@dataclass
class SyntheticPageSource:
    pages: int
    page_size: int = PAGE_SIZE
    version: str = "v1"
    fail_after_pages: int | None = None
    hang_after_pages: int | None = None
    fail_at_end: bool = False  # fail when asked for more after the last page
    reject_resume: bool = False
    ledger_pages: tuple[int, ...] = ()
    page_delay_seconds: float = 0.0
    fingerprint: str = "synthetic:edge=insights:fields=id,page,row"
    api_version: str = "v23.0"
    primary_key: tuple[str, ...] = ("id",)
    manifest_extras: JsonDict = field(default_factory=lambda: {"final": False, "window": "1d"})
    opened_with: list[JsonDict | None] = field(default_factory=list)
    yielded_pages: list[int] = field(default_factory=list)

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]:
        self.opened_with.append(resume_state)
        return self._pages(resume_state)

    def _pages(self, resume_state: JsonDict | None) -> Iterator[Page]:
        if resume_state is not None and self.reject_resume:
            raise ResumeRejected("cursor expired (synthetic)")
        start = int(resume_state["next_page"]) if resume_state else 0
        stats = RequestStats.from_dict(resume_state.get("stats") if resume_state else None)
        for count, index in enumerate(range(start, self.pages)):
            if self.fail_after_pages is not None and count >= self.fail_after_pages:
                raise SourceFailure(f"synthetic failure before page {index}")
            if self.hang_after_pages is not None and count >= self.hang_after_pages:
                time.sleep(3600)  # the SIGKILL test kills us here
            if self.page_delay_seconds:
                time.sleep(self.page_delay_seconds)
            for hook in PAGE_HOOKS:
                hook(index, self.version)
            stats.logical_requests += 1
            stats.attempts += 1
            failures: list[LedgerEntry] = []
            if index in self.ledger_pages:
                stats.logical_requests += 1
                stats.attempts += 2
                stats.retries += 1
                stats.record_failure("100")
                failures.append(_ledger_entry(index))
            stats.succeeded_requests += 1
            records = [
                {"id": f"{index}-{row}", "page": index, "row": row, "version": self.version}
                for row in range(self.page_size)
            ]
            more = index + 1 < self.pages
            state = {"next_page": index + 1, "stats": stats.to_dict()} if more else None
            self.yielded_pages.append(index)
            yield Page(
                records=records,
                resume_state=state,
                stats=stats.copy(),
                total_count=self.pages * self.page_size,
                failures=failures,
            )
        if self.fail_at_end:
            raise SourceFailure("synthetic failure after the last page")


def _ledger_entry(page: int) -> LedgerEntry:
    return LedgerEntry(
        kind="insights_slice",
        request={"method": "GET", "path": "/v23.0/act_1/insights", "params": {"page": page}},
        code=100,
        subcode=1487534,
        message="Invalid parameter (synthetic)",
        fbtrace_id=f"trace-{page}",
        recorded_at="2026-11-02T00:00:00Z",
    )


class SyntheticConfig(dg.Config):
    pages: int = 10
    version: str = "v1"
    # Failure injection applies only to the first run of a chain (not to re-executions).
    fail_after_pages: int | None = None
    fail_attempts: int = 1  # how many step attempts fail (the asset retries once)
    hang_after_pages: int | None = None
    fail_at_end: bool = False
    fail_after_commit: bool = False  # the failing attempts fail once their output is committed
    reject_resume: bool = False
    ledger_pages: list[int] = []
    page_delay_seconds: float = 0.0


@dg.asset(
    key=ASSET_KEY,
    partitions_def=account_day_partitions,
    retry_policy=dg.RetryPolicy(max_retries=1),
)
def synthetic(
    context: dg.AssetExecutionContext, config: SyntheticConfig
) -> Iterator[dg.Output[SyntheticPageSource]]:
    first_run = context.run.parent_run_id is None
    inject = first_run and context.retry_number < config.fail_attempts
    source = SyntheticPageSource(
        pages=config.pages,
        version=config.version,
        fail_after_pages=config.fail_after_pages if inject else None,
        hang_after_pages=config.hang_after_pages if first_run else None,
        fail_at_end=config.fail_at_end and inject,
        reject_resume=config.reject_resume,
        ledger_pages=tuple(config.ledger_pages),
        page_delay_seconds=config.page_delay_seconds,
    )
    OPENED_SOURCES.append(source)
    yield dg.Output(source)
    if inject and config.fail_after_commit:
        # As a run killed during the checks that follow the commit.
        raise SourceFailure("synthetic failure after the commit")


@dg.asset(
    partitions_def=account_day_partitions,
    io_manager_key="summary_io_manager",
    ins={
        "synthetic": dg.AssetIn(
            key=ASSET_KEY,
            partition_mapping=dg.MultiPartitionMapping(
                {
                    "account": dg.DimensionPartitionMapping(
                        "account", dg.IdentityPartitionMapping()
                    ),
                    "date": dg.DimensionPartitionMapping(
                        "date", dg.TimeWindowPartitionMapping(start_offset=-2)
                    ),
                }
            ),
        )
    },
)
def three_day_summary(synthetic: Any) -> JsonDict:
    """Reads three days of the upstream asset through load_input (a lazy record iterator)."""
    ids: list[str] = []
    versions: set[str] = set()
    for record in synthetic:
        ids.append(f"{record['version']}:{record['id']}")
        versions.add(record["version"])
    return {"records": len(ids), "unique": len(set(ids)), "versions": sorted(versions)}


def io_manager() -> MetaGCSIOManager:
    return MetaGCSIOManager(
        gcs=GCSResource(project="meta-test"),
        bucket=dg.EnvVar("GCS_BUCKET"),
        prefix=PREFIX,
        records_per_object=RECORDS_PER_OBJECT,
        checkpoint_every_objects=dg.EnvVar.int("IO_TEST_CHECKPOINT_EVERY"),
    )


defs = dg.Definitions(
    assets=[synthetic, three_day_summary],
    jobs=[
        dg.define_asset_job(
            "synthetic_job",
            selection=[ASSET_KEY],
            partitions_def=account_day_partitions,
            executor_def=dg.in_process_executor,
        )
    ],
    resources={"io_manager": io_manager(), "summary_io_manager": dg.mem_io_manager},
)


def get_job() -> dg.JobDefinition:
    return defs.resolve_job_def("synthetic_job")


def partition_tags(partition_key: str) -> dict[str, str]:
    """Run tags that select one account x day partition (what the UI and CLI set)."""
    account, day = partition_key.split("|")
    return {
        "dagster/partition": partition_key,
        "dagster/partition/account": account,
        "dagster/partition/date": day,
    }


def execute(
    instance: dg.DagsterInstance, partition_key: str, **asset_config: object
) -> JobExecutionResult:
    return dg.execute_job(
        dg.reconstructable(get_job),
        instance=instance,
        tags=partition_tags(partition_key),
        run_config=run_config(**asset_config),
        raise_on_error=False,
    )


def reexecute_from_failure(instance: dg.DagsterInstance, run_id: str) -> JobExecutionResult:
    parent = instance.get_run_by_id(run_id)
    assert parent is not None
    # As the UI does: the re-execution keeps the parent's partition tags.
    tags = {k: v for k, v in parent.tags.items() if k.startswith("dagster/partition")}
    return dg.execute_job(
        dg.reconstructable(get_job),
        instance=instance,
        tags=tags,
        reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        raise_on_error=False,
    )


def run_config(**asset_config: object) -> JsonDict:
    return {"ops": {"meta_test__synthetic": {"config": asset_config}}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", required=True)
    parser.add_argument("--config", default="{}", help="asset config as JSON")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        result = execute(instance, args.partition, **json.loads(args.config))
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
