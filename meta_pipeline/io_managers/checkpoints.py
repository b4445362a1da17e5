"""Checkpoints: ``AssetObservation``s on the asset partition, read back from the event log.

A checkpoint is logged only after the data objects it lists are durable in GCS.
It applies only to a retry or re-execution of the attempt chain that logged it
(same root run), for the same request fingerprint, and only if the partition
was not materialized after it. Anything else starts the partition over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg

from meta_pipeline.io_managers.manifest import StoredObject
from meta_pipeline.pages import JsonDict, LedgerEntry, RequestStats

CHECKPOINT_KEY = "meta_checkpoint"
CHECKPOINT_FORMAT = "meta_pipeline.checkpoint/v1"
_SCAN_PAGE_SIZE = 100
_SCAN_LIMIT = 1000
# Parameters that carry credentials: a resume state holding one must never be stored.
_SECRET_MARKERS = ("access_token", "appsecret_proof", "client_secret")


class UnsafeResumeState(ValueError):
    """A resume state that contains a credential; storing it would leak it."""


@dataclass(frozen=True)
class Checkpoint:
    attempt_id: str
    root_run_id: str
    run_id: str
    fingerprint: str
    resume_state: JsonDict | None
    objects: tuple[StoredObject, ...]
    pages: int
    request_stats: JsonDict = field(default_factory=dict)
    ledger: tuple[JsonDict, ...] = ()
    api_total_count: int | None = None
    complete: bool = False  # the stream is exhausted; only the commit is left
    reset_reason: str | None = None  # a marker: earlier checkpoints of this chain are void
    written_at: str = ""

    @property
    def records(self) -> int:
        return sum(o.records for o in self.objects)

    @property
    def report_run_id(self) -> str | None:
        """The in-flight async insights report, when the resume state names one."""
        state = self.resume_state or {}
        value = state.get("report_run_id")
        return str(value) if value is not None else None

    def ledger_entries(self) -> list[LedgerEntry]:
        return [LedgerEntry.from_dict(e) for e in self.ledger]

    def to_dict(self) -> JsonDict:
        return {
            "format": CHECKPOINT_FORMAT,
            "attempt_id": self.attempt_id,
            "root_run_id": self.root_run_id,
            "run_id": self.run_id,
            "fingerprint": self.fingerprint,
            "resume_state": self.resume_state,
            "objects": [o.to_dict() for o in self.objects],
            "pages": self.pages,
            "request_stats": self.request_stats,
            "ledger": list(self.ledger),
            "api_total_count": self.api_total_count,
            "complete": self.complete,
            "reset_reason": self.reset_reason,
            "written_at": self.written_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            attempt_id=str(data["attempt_id"]),
            root_run_id=str(data["root_run_id"]),
            run_id=str(data["run_id"]),
            fingerprint=str(data["fingerprint"]),
            resume_state=data.get("resume_state"),
            objects=tuple(StoredObject.from_dict(o) for o in data.get("objects") or ()),
            pages=int(data.get("pages", 0)),
            request_stats=dict(data.get("request_stats") or {}),
            ledger=tuple(dict(e) for e in data.get("ledger") or ()),
            api_total_count=data.get("api_total_count"),
            complete=bool(data.get("complete", False)),
            reset_reason=data.get("reset_reason"),
            written_at=str(data.get("written_at", "")),
        )

    def to_observation(self, asset_key: dg.AssetKey, partition_key: str) -> dg.AssetObservation:
        check_resume_state_is_safe(self.resume_state)
        stats = RequestStats.from_dict(self.request_stats)
        metadata: dict[str, Any] = {
            CHECKPOINT_KEY: dg.MetadataValue.json(self.to_dict()),
            "checkpoint_objects": dg.MetadataValue.int(len(self.objects)),
            "checkpoint_records": dg.MetadataValue.int(self.records),
            "checkpoint_pages": dg.MetadataValue.int(self.pages),
            "logical_requests": dg.MetadataValue.int(stats.logical_requests),
            "ledger_entries": dg.MetadataValue.int(len(self.ledger)),
            "attempt_id": dg.MetadataValue.text(self.attempt_id),
            "complete": dg.MetadataValue.bool(self.complete),
        }
        if self.report_run_id:
            metadata["report_run_id"] = dg.MetadataValue.text(self.report_run_id)
        if self.reset_reason:
            metadata["reset_reason"] = dg.MetadataValue.text(self.reset_reason)
        return dg.AssetObservation(
            asset_key=asset_key,
            partition=partition_key,
            description="checkpoint" if not self.reset_reason else "checkpoint reset",
            metadata=metadata,
        )


def check_resume_state_is_safe(resume_state: JsonDict | None) -> None:
    if resume_state is None:
        return
    text = json.dumps(resume_state).lower()
    if any(marker in text for marker in _SECRET_MARKERS):
        raise UnsafeResumeState(
            "The page stream's resume state contains a credential parameter; refusing to "
            "store it in a checkpoint (the client must strip tokens from cursors)"
        )


@dataclass(frozen=True)
class ResumeDecision:
    checkpoint: Checkpoint | None
    reason: str
    storage_id: int | None = None


def _checkpoint_of(record: dg.EventLogRecord) -> Checkpoint | None:
    observation = record.asset_observation
    if observation is None:
        return None
    entry = observation.metadata.get(CHECKPOINT_KEY)
    if not isinstance(entry, dg.JsonMetadataValue) or not isinstance(entry.data, Mapping):
        return None
    if entry.data.get("format") != CHECKPOINT_FORMAT:
        return None
    return Checkpoint.from_dict(entry.data)


def latest_checkpoint_of_chain(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition_key: str,
    root_run_id: str,
) -> tuple[Checkpoint, int] | None:
    """Newest checkpoint logged on the partition by runs of this attempt chain."""
    cursor: str | None = None
    scanned = 0
    records_filter = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key])
    while scanned < _SCAN_LIMIT:
        result = instance.fetch_observations(records_filter, limit=_SCAN_PAGE_SIZE, cursor=cursor)
        for record in result.records:
            scanned += 1
            checkpoint = _checkpoint_of(record)
            if checkpoint is not None and checkpoint.root_run_id == root_run_id:
                return checkpoint, record.storage_id
        if not result.has_more:
            return None
        cursor = result.cursor
    return None


def decide_resume(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition_key: str,
    *,
    root_run_id: str,
    fingerprint: str,
) -> ResumeDecision:
    """Whether this run continues an unfinished attempt, and why (or why not)."""
    found = latest_checkpoint_of_chain(instance, asset_key, partition_key, root_run_id)
    if found is None:
        return ResumeDecision(None, "no checkpoint from this run or the run it re-executes")
    checkpoint, storage_id = found
    if checkpoint.reset_reason:
        return ResumeDecision(None, f"last checkpoint was reset ({checkpoint.reset_reason})")
    if not checkpoint.complete and checkpoint.pages > 0 and checkpoint.resume_state is None:
        # Only a stream's last page has no resume state: when that page filled an object, its
        # checkpoint covers the whole stream even if the complete one was never logged. Opening
        # the source at None would start over on top of these objects and duplicate them.
        checkpoint = replace(checkpoint, complete=True)
    materialized_after = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=asset_key, asset_partitions=[partition_key], after_storage_id=storage_id
        ),
        limit=_SCAN_PAGE_SIZE,
    )
    if materialized_after.records:
        if not materialized_after.has_more and _committed_by_unfinished_steps(
            instance, checkpoint, materialized_after.records
        ):
            # Killed after its own commit (during the checks, say): the stream was complete
            # and is committed; commit it again instead of fetching the partition anew.
            return ResumeDecision(
                checkpoint,
                f"attempt {checkpoint.attempt_id} was complete and committed by run "
                f"{checkpoint.run_id}, which did not finish; committing it again",
                storage_id,
            )
        return ResumeDecision(
            None, "the partition was materialized after the last checkpoint of this chain"
        )
    if checkpoint.fingerprint != fingerprint:
        return ResumeDecision(
            None, "the request fingerprint changed since the checkpoint (different request)"
        )
    return ResumeDecision(
        checkpoint,
        f"continuing attempt {checkpoint.attempt_id} of run {checkpoint.run_id}",
        storage_id,
    )


def _committed_by_unfinished_steps(
    instance: dg.DagsterInstance,
    checkpoint: Checkpoint,
    materializations: Sequence[dg.EventLogRecord],
) -> bool:
    """Every materialization after a complete checkpoint is its own, by a run that failed.

    One per step attempt that was killed after committing (a re-commit killed during the
    checks adds another): the same attempt, so committing it again is still exact.
    """
    if not checkpoint.complete:
        return False
    for record in materializations:
        event = record.asset_materialization
        attempt = event.metadata.get("attempt_id") if event is not None else None
        if not isinstance(attempt, dg.TextMetadataValue) or attempt.value != checkpoint.attempt_id:
            return False
        # A re-execution of a run that succeeded is a refresh: fetch anew.
        run = instance.get_run_by_id(record.run_id)
        if run is None or run.status == dg.DagsterRunStatus.SUCCESS:
            return False
    return True


def describe(objects: Sequence[StoredObject]) -> str:
    return f"{len(objects)} object(s), {sum(o.records for o in objects)} record(s)"
