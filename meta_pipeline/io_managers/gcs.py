"""``MetaGCSIOManager``: page streams in, atomic self-describing partitions out.

``handle_output`` takes the asset's lazy :class:`~meta_pipeline.pages.PageSource`,
decides from the checkpoints in the event log whether this run continues an
unfinished attempt, opens the stream at that resume state (or fresh), writes
gzip NDJSON objects as pages arrive, checkpoints after each durable batch,
commits ``_manifest.json`` in one PUT and removes superseded objects.
``load_input`` streams the committed records of one or more partitions lazily.

(No ``from __future__ import annotations``: Dagster resolves the resource fields' types
at runtime.)
"""

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource
from google.auth import exceptions as auth_exceptions
from pydantic import Field, PrivateAttr

from meta_pipeline.io_managers.checkpoints import Checkpoint, ResumeDecision, decide_resume
from meta_pipeline.io_managers.layout import PartitionLocation, attempt_id_for
from meta_pipeline.io_managers.manifest import Manifest
from meta_pipeline.io_managers.store import (
    _CREDENTIALS_HINT,
    DEFAULT_BYTES_PER_OBJECT,
    DEFAULT_RECORDS_PER_OBJECT,
    PartitionStore,
    PartitionWriter,
    StorageAccessError,
    utc_now_iso,
)
from meta_pipeline.pages import (
    JsonDict,
    LedgerEntry,
    Page,
    PageSource,
    RequestStats,
    ResumeRejected,
)

# A stream whose fresh cursors keep being refused is not making progress: fail after this.
MAX_MID_STREAM_RESTARTS = 3


class ConcurrentMaterializationError(RuntimeError):
    """Another run of the same partition committed first and removed this run's objects."""


@dataclass
class _Progress:
    """What the attempt has consumed so far (cumulative across resumes)."""

    pages: int = 0
    stats: RequestStats = field(default_factory=RequestStats)
    ledger: list[LedgerEntry] = field(default_factory=list)
    api_total_count: int | None = None
    resume_state: JsonDict | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> "_Progress":
        return cls(
            pages=checkpoint.pages,
            stats=RequestStats.from_dict(checkpoint.request_stats),
            ledger=checkpoint.ledger_entries(),
            api_total_count=checkpoint.api_total_count,
            resume_state=checkpoint.resume_state,
        )

    def reset(self) -> None:
        self.pages = 0
        self.stats = RequestStats()
        self.ledger = []
        self.api_total_count = None
        self.resume_state = None

    def consume(self, page: Page) -> None:
        self.pages += 1
        self.stats = page.stats.copy()
        self.ledger.extend(page.failures)
        if page.total_count is not None:
            self.api_total_count = page.total_count
        self.resume_state = page.resume_state


@dataclass(frozen=True)
class _RunIdentity:
    run_id: str
    root_run_id: str
    instance: dg.DagsterInstance | None


@dataclass(frozen=True)
class _CheckpointBase:
    attempt_id: str
    identity: _RunIdentity
    fingerprint: str


class MetaGCSIOManager(dg.ConfigurableIOManager):
    """Writes page streams to GCS as resumable, atomically committed partitions."""

    gcs: dg.ResourceDependency[GCSResource]
    bucket: str = Field(description="GCS bucket (setting GCS_BUCKET); must exist")
    prefix: str = Field(default="meta", description="Object name prefix (setting GCS_PREFIX)")
    records_per_object: int = Field(
        default=DEFAULT_RECORDS_PER_OBJECT, description="Max records per data object"
    )
    bytes_per_object: int = Field(
        default=DEFAULT_BYTES_PER_OBJECT,
        description="Max uncompressed NDJSON bytes per data object",
    )
    checkpoint_every_objects: int = Field(
        default=1, description="Log a checkpoint after this many durable objects"
    )

    _store: PartitionStore | None = PrivateAttr(default=None)

    # -- setup ---------------------------------------------------------------------

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Checked here, not with pydantic bounds, because the values may be EnvVars.
        for name in ("records_per_object", "bytes_per_object", "checkpoint_every_objects"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MetaGCSIOManager.{name} must be > 0")
        self._store = self._open_store()
        self._store.check_access()

    def _open_store(self) -> PartitionStore:
        if not self.bucket.strip():
            raise StorageAccessError("GCS bucket is not set: set GCS_BUCKET to an existing bucket")
        try:
            client = self.gcs.get_client()
        except auth_exceptions.DefaultCredentialsError as exc:
            raise StorageAccessError(
                f"No Google Cloud credentials found: {_CREDENTIALS_HINT}"
            ) from exc
        return PartitionStore(client, self.bucket, self.prefix)

    @property
    def store(self) -> PartitionStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    # -- writing -------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Store one partition's page source, or one source per partition of a range run.

        A range run (several days of one account, from a backfill policy) hands over a
        mapping of partition key to source. Each partition is still resumed, checkpointed
        and committed on its own, in key order, so a run killed midway keeps every
        partition it committed and its re-execution re-commits them without refetching.
        """
        if not context.has_asset_partitions:
            raise ValueError(
                f"MetaGCSIOManager stores account x day partitions: asset "
                f"{context.asset_key.to_user_string()} was materialized without a partition"
            )
        keys = sorted(context.asset_partition_keys)
        sources = _sources_by_partition(context.asset_key, keys, obj)
        if len(keys) == 1:
            metadata = self._write_partition(context, keys[0], sources[keys[0]], context.log.info)
            context.add_output_metadata(metadata)
            return
        # Every event-log entry is a database write: a range run logs one line per partition
        # in one entry at the end, not a start and a commit line each (warnings stay at once).
        lines: list[str] = []
        done = 0
        try:
            for key in keys:
                metadata = self._write_partition(context, key, sources[key], lines.append)
                # Per-partition figures on each partition's own materialization event.
                context.step_context.add_asset_metadata(
                    metadata, asset_key=context.asset_key, partition_key=key
                )
                done += 1
        finally:
            # Also when a partition fails: what the range committed before it stays on record.
            context.log.info(
                f"{context.asset_key.to_user_string()}: {done} of {len(keys)} partition(s) "
                "committed\n" + "\n".join(lines)
            )

    def _write_partition(
        self,
        context: dg.OutputContext,
        key: str,
        obj: PageSource,
        note: Callable[[str], None],
    ) -> dict[str, Any]:
        started = time.monotonic()
        # Validates the partition key before any object name exists.
        location = self.store.location(context.asset_key, key)
        partition_key = location.partition_key
        identity = _run_identity(context)
        committed = self.store.read_manifest_at(location)
        committed_attempt = committed.attempt_id if committed else None

        decision = self._decide(context, identity, partition_key, obj.fingerprint)
        checkpoint = decision.checkpoint
        if checkpoint is not None and not self._checkpoint_objects_intact(location, checkpoint):
            context.log.warning(
                f"Not resuming {location.asset_name} {partition_key}: objects listed by the "
                "checkpoint are missing or changed; starting the partition over"
            )
            checkpoint = None
        if checkpoint is not None:
            attempt_id = checkpoint.attempt_id
            progress = _Progress.from_checkpoint(checkpoint)
            context.log.info(
                f"Resuming {location.asset_name} {partition_key} ({decision.reason}): "
                f"{len(checkpoint.objects)} object(s) with {checkpoint.records} record(s) "
                f"already durable, continuing after page {checkpoint.pages}"
                + (f", async report {checkpoint.report_run_id}" if checkpoint.report_run_id else "")
            )
        else:
            attempt_id = _fresh_attempt_id(identity, committed_attempt)
            progress = _Progress()
            note(
                f"Starting {location.asset_name} {partition_key} from the beginning "
                f"({decision.reason}); attempt {attempt_id}"
            )

        writer = PartitionWriter(
            self.store,
            location,
            attempt_id,
            records_per_object=self.records_per_object,
            bytes_per_object=self.bytes_per_object,
            objects=list(checkpoint.objects) if checkpoint else [],
        )
        resumed_from_objects = len(writer.objects)
        base = _CheckpointBase(attempt_id, identity, obj.fingerprint)

        if checkpoint is None or not checkpoint.complete:
            pages, restarted = self._open_stream(
                context, obj, location, writer, progress, base, checkpoint
            )
            if restarted:
                resumed_from_objects = 0
            for restart in itertools.count(1):
                try:
                    self._consume(context, pages, location, writer, progress, base)
                    break
                except ResumeRejected as exc:
                    # A cursor the API issued moments ago was refused (Meta invalidates
                    # cursors when the item under them goes away): start the partition over.
                    if restart > MAX_MID_STREAM_RESTARTS:
                        raise
                    reason = f"cursor refused mid-stream: {exc}"
                    pages = self._restart(context, obj, location, writer, progress, base, reason)
                    resumed_from_objects = 0

        ledger_object = self.store.write_ledger(location, attempt_id, progress.ledger)
        manifest = Manifest(
            asset=location.asset_name,
            partition=partition_key,
            account_id=location.partition.account_id,
            date=location.partition.day.isoformat(),
            attempt_id=attempt_id,
            run_id=identity.run_id,
            extracted_at=utc_now_iso(),
            api_version=obj.api_version,
            fingerprint=obj.fingerprint,
            objects=tuple(writer.objects),
            ledger=ledger_object,
            primary_key=tuple(obj.primary_key),
            source=dict(obj.manifest_extras or {}),
            request_stats=progress.stats.to_dict(),
            pages=progress.pages,
            api_total_count=progress.api_total_count,
            resumed=resumed_from_objects > 0,
            resumed_from_objects=resumed_from_objects,
        )
        self._ensure_listed_objects_exist(location, manifest)
        removed = self.store.commit(location, manifest)
        note(
            f"Committed {location.manifest_uri}: {manifest.records} record(s) in "
            f"{len(manifest.objects)} object(s); removed {len(removed)} superseded object(s)"
        )
        return _output_metadata(
            location, manifest, progress, len(removed), time.monotonic() - started
        )

    def _decide(
        self,
        context: dg.OutputContext,
        identity: _RunIdentity,
        partition_key: str,
        fingerprint: str,
    ) -> ResumeDecision:
        if identity.instance is None:
            return ResumeDecision(None, "no Dagster instance: checkpoints unavailable")
        return decide_resume(
            identity.instance,
            context.asset_key,
            partition_key,
            root_run_id=identity.root_run_id,
            fingerprint=fingerprint,
        )

    def _ensure_listed_objects_exist(self, location: PartitionLocation, manifest: Manifest) -> None:
        """Refuse to publish a manifest listing objects that are gone.

        A commit deletes every object its manifest does not list, so a concurrent run of the
        same partition (the queue's per-account limit prevents it; a forced second run does
        not) may have removed this attempt's objects. Committing anyway would publish a
        partition with holes; failing keeps the other run's complete version.
        """
        present = set(self.store.list_object_names(location))
        listed = [*manifest.objects, *([manifest.ledger] if manifest.ledger else [])]
        missing = [o.path for o in listed if location.object_name(o.path) not in present]
        if missing:
            raise ConcurrentMaterializationError(
                f"Not committing {location.asset_name} {location.partition_key}: "
                f"{len(missing)} object(s) of attempt {manifest.attempt_id} were removed by a "
                "concurrent materialization of the same partition, whose version stays "
                "committed. Run one materialization per partition at a time."
            )

    def _checkpoint_objects_intact(
        self, location: PartitionLocation, checkpoint: Checkpoint
    ) -> bool:
        return all(self.store.object_matches(location, o) for o in checkpoint.objects)

    def _open_stream(
        self,
        context: dg.OutputContext,
        source: PageSource,
        location: PartitionLocation,
        writer: PartitionWriter,
        progress: _Progress,
        base: _CheckpointBase,
        checkpoint: Checkpoint | None,
    ) -> tuple[Iterator[Page], bool]:
        """The page stream at the checkpoint if the API accepts it, else from scratch.

        The flag says whether a rejected resume state restarted the partition.
        """
        if checkpoint is None:
            return _started(source, None), False
        try:
            return _started(source, checkpoint.resume_state), False
        except ResumeRejected as exc:
            reason = f"resume state rejected by the API: {exc}"
        return self._restart(context, source, location, writer, progress, base, reason), True

    def _restart(
        self,
        context: dg.OutputContext,
        source: PageSource,
        location: PartitionLocation,
        writer: PartitionWriter,
        progress: _Progress,
        base: _CheckpointBase,
        reason: str,
    ) -> Iterator[Page]:
        """Discard this attempt's objects and open the source from scratch."""
        context.log.warning(
            f"Restarting {location.asset_name} {location.partition_key} from scratch: {reason}; "
            f"discarding {len(writer.objects)} written object(s)"
        )
        attempt_folder = location.attempt_folder(base.attempt_id) + "/"
        self.store.delete_objects(
            name
            for name in self.store.list_object_names(location)
            if name.startswith(attempt_folder)
        )
        writer.discard()
        progress.reset()
        # A reset marker, so a later re-execution does not pick the discarded checkpoint.
        self._log_checkpoint(context, location, writer, progress, base, reset_reason=reason)
        return _started(source, None)

    def _consume(
        self,
        context: dg.OutputContext,
        pages: Iterator[Page],
        location: PartitionLocation,
        writer: PartitionWriter,
        progress: _Progress,
        base: _CheckpointBase,
    ) -> None:
        since_checkpoint = 0
        reporter = _ProgressReporter(context, location, started=time.monotonic())
        for page in pages:
            writer.add(page.records)
            progress.consume(page)
            reporter.page_done(
                progress.pages,
                sum(o.records for o in writer.objects) + writer.pending_records,
                progress.api_total_count,
            )
            # Objects end on page boundaries, so a checkpoint's cursor covers whole objects.
            if writer.buffer_is_full:
                writer.flush()
                since_checkpoint += 1
                if since_checkpoint >= self.checkpoint_every_objects:
                    self._log_checkpoint(context, location, writer, progress, base)
                    since_checkpoint = 0
        writer.flush()
        self._log_checkpoint(context, location, writer, progress, base, complete=True)

    def _log_checkpoint(
        self,
        context: dg.OutputContext,
        location: PartitionLocation,
        writer: PartitionWriter,
        progress: _Progress,
        base: _CheckpointBase,
        *,
        complete: bool = False,
        reset_reason: str | None = None,
    ) -> None:
        if base.identity.instance is None:
            return
        checkpoint = Checkpoint(
            attempt_id=base.attempt_id,
            root_run_id=base.identity.root_run_id,
            run_id=base.identity.run_id,
            fingerprint=base.fingerprint,
            resume_state=progress.resume_state,
            objects=tuple(writer.objects),
            pages=progress.pages,
            request_stats=progress.stats.to_dict(),
            ledger=tuple(e.to_dict() for e in progress.ledger),
            api_total_count=progress.api_total_count,
            complete=complete,
            reset_reason=reset_reason,
            written_at=utc_now_iso(),
        )
        context.log_event(checkpoint.to_observation(context.asset_key, location.partition_key))

    # -- reading -------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> Iterator[JsonDict]:
        """Lazily stream committed records of the partition(s) the input depends on."""
        asset_key = context.asset_key
        if context.has_asset_partitions:
            keys: list[str] = list(context.asset_partition_keys)
        else:
            raise ValueError(
                f"MetaGCSIOManager reads partitions: input {context.name} of "
                f"{asset_key.to_user_string()} depends on no partition"
            )
        store = self.store
        # Validate every key up front: a bad key fails before any read starts.
        for key in keys:
            store.location(asset_key, key)
        # Same opt-in as Dagster's UPath IO managers; by default a missing partition is an error.
        skip_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        return store.iter_partitions_records(asset_key, keys, skip_missing=skip_missing)


@dataclass
class _ProgressReporter:
    """Steady progress lines in the run log for long partitions (not every page)."""

    context: dg.OutputContext
    location: PartitionLocation
    started: float
    every_seconds: float = 15.0
    last_report: float = field(default=0.0)

    def page_done(self, pages: int, records: int, total: int | None) -> None:
        now = time.monotonic()
        if now - max(self.last_report, self.started) < self.every_seconds:
            return
        self.last_report = now
        rate = records / max(now - self.started, 1e-6)
        line = (
            f"{self.location.asset_name} {self.location.partition_key}: {pages} page(s), "
            f"{records} record(s), {rate:.0f} records/s"
        )
        if total:
            remaining = max(total - records, 0)
            line += f"; {remaining} of {total} left, about {remaining / max(rate, 1e-6):.0f}s"
        self.context.log.info(line)


def _sources_by_partition(
    asset_key: dg.AssetKey, keys: list[str], obj: Any
) -> Mapping[str, PageSource]:
    """The source of each partition the step materializes, checked before anything is written."""
    name = asset_key.to_user_string()
    if isinstance(obj, PageSource):
        if len(keys) != 1:
            raise TypeError(
                f"MetaGCSIOManager: asset {name} returned one page stream for {len(keys)} "
                "partitions; a range run must return a mapping of partition key to page stream"
            )
        return {keys[0]: obj}
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"MetaGCSIOManager stores page streams: asset {name} returned "
            f"{type(obj).__name__}, expected a meta_pipeline.pages.PageSource "
            "(or a mapping of partition key to PageSource for a range run)"
        )
    if sorted(obj) != keys:
        raise ValueError(
            f"MetaGCSIOManager: asset {name} returned page streams for partitions "
            f"{sorted(obj)[:5]}, but the step materializes {keys[:5]} ({len(keys)} in all)"
        )
    for key, source in obj.items():
        if not isinstance(source, PageSource):
            raise TypeError(
                f"MetaGCSIOManager: asset {name} returned {type(source).__name__} for "
                f"partition {key!r}, expected a meta_pipeline.pages.PageSource"
            )
    return obj


def _started(source: PageSource, resume_state: JsonDict | None) -> Iterator[Page]:
    """Open the source and pull the first page, so ResumeRejected surfaces here."""
    pages = iter(source.open(resume_state))
    first = next(pages, None)
    if first is None:
        return iter(())
    return itertools.chain((first,), pages)


def _run_identity(context: dg.OutputContext) -> _RunIdentity:
    try:
        step_context = context.step_context
    except dg.DagsterInvariantViolationError:
        return _RunIdentity(run_id=context.run_id, root_run_id=context.run_id, instance=None)
    run = step_context.dagster_run
    root = run.root_run_id or run.tags.get("dagster/root_run_id") or run.run_id
    return _RunIdentity(run_id=run.run_id, root_run_id=root, instance=step_context.instance)


def _fresh_attempt_id(identity: _RunIdentity, committed_attempt: str | None) -> str:
    """Stable per attempt chain; never the attempt a committed manifest lists."""
    candidates = (
        attempt_id_for(identity.root_run_id),
        attempt_id_for(identity.root_run_id, identity.run_id),
    )
    for candidate in candidates:
        if candidate != committed_attempt:
            return candidate
    return attempt_id_for(identity.root_run_id, identity.run_id, str(time.time_ns()))


def _output_metadata(
    location: PartitionLocation,
    manifest: Manifest,
    progress: _Progress,
    removed: int,
    duration_seconds: float,
) -> dict[str, Any]:
    stats = progress.stats
    console = (
        f"https://console.cloud.google.com/storage/browser/{location.bucket}/{location.folder}"
    )
    metadata: dict[str, Any] = {
        "records": dg.MetadataValue.int(manifest.records),
        "objects": dg.MetadataValue.int(len(manifest.objects)),
        "bytes": dg.MetadataValue.int(manifest.total_bytes),
        "pages": dg.MetadataValue.int(manifest.pages),
        "logical_requests": dg.MetadataValue.int(stats.logical_requests),
        "retries": dg.MetadataValue.int(stats.retries),
        "throttle_wait_seconds": dg.MetadataValue.float(float(stats.throttle_wait_seconds)),
        "failures": dg.MetadataValue.int(stats.failed_requests),
        "accuracy": dg.MetadataValue.float(float(stats.accuracy)),
        "duration_seconds": dg.MetadataValue.float(round(duration_seconds, 3)),
        "api_version": dg.MetadataValue.text(manifest.api_version or ""),
        "fingerprint": dg.MetadataValue.text(manifest.fingerprint or ""),
        "manifest_uri": dg.MetadataValue.path(location.manifest_uri),
        "gcs_path": dg.MetadataValue.path(location.folder_uri),
        "gcs_console": dg.MetadataValue.url(console),
        "resumed": dg.MetadataValue.bool(manifest.resumed),
        "resumed_from_objects": dg.MetadataValue.int(manifest.resumed_from_objects),
        "ledger_entries": dg.MetadataValue.int(manifest.ledger_entries),
        "superseded_objects_removed": dg.MetadataValue.int(removed),
        "attempt_id": dg.MetadataValue.text(manifest.attempt_id),
    }
    if manifest.api_total_count is not None:
        metadata["api_total_count"] = dg.MetadataValue.int(int(manifest.api_total_count))
        if manifest.api_total_count > 0:
            # Records written against the API's own count for the partition.
            completeness = manifest.records / manifest.api_total_count
            metadata["records_vs_api_total"] = dg.MetadataValue.float(round(completeness, 6))
    if manifest.final is not None:
        metadata["final"] = dg.MetadataValue.bool(manifest.final)
    # The account-local window the partition covers, as the source described it.
    for name in ("time_zone", "window_start", "window_end"):
        if name in manifest.source:
            metadata[name] = dg.MetadataValue.text(str(manifest.source[name]))
    return metadata
