"""Replay of the failed-request ledger: re-issue only what failed, fold it back in.

Each committed partition may list a ledger of requests that failed for good
without stopping it (an async slice that still failed after splitting, a
creative Meta would not return). A replay re-issues exactly those requests and,
if any succeed, commits a new version of the partition: the old records plus
the recovered ones (deduplicated on the primary key, the recovered copy
winning) and a ledger of what still fails. A partition without a ledger is
never touched, so replaying twice changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import dagster as dg

from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.pages import JsonDict, LedgerEntry, RequestStats
from meta_pipeline.resources.errors import MetaApiError
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.resources.redact import redact

logger = logging.getLogger(__name__)


@dataclass
class ReplayOutcome:
    asset: str
    partition_key: str
    reissued: int = 0
    recovered_requests: int = 0
    recovered_records: int = 0
    still_failing: int = 0
    committed: bool = False


@dataclass
class ReplaySummary:
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    @property
    def reissued(self) -> int:
        return sum(o.reissued for o in self.outcomes)

    @property
    def recovered_requests(self) -> int:
        return sum(o.recovered_requests for o in self.outcomes)

    @property
    def still_failing(self) -> int:
        return sum(o.still_failing for o in self.outcomes)


def partitions_with_ledger(
    store: PartitionStore, asset_keys: Iterable[dg.AssetKey]
) -> Iterator[tuple[dg.AssetKey, str]]:
    """Committed partitions of these assets whose manifest lists ledger entries."""
    for key in asset_keys:
        for partition_key in store.committed_partitions(key):
            manifest = store.read_manifest(key, partition_key)
            if manifest is not None and manifest.ledger_entries > 0:
                yield key, partition_key


def _reissue(client: MetaAdsClient, entry: LedgerEntry) -> tuple[list[JsonDict], list[LedgerEntry]]:
    """Records recovered by one ledger entry, and the entries that still fail."""
    records: list[JsonDict] = []
    failures: list[LedgerEntry] = []
    for page in client.replay(entry):
        records.extend(page.records)
        failures.extend(page.failures)
    return records, failures


def _still_failing(entry: LedgerEntry, error: MetaApiError) -> LedgerEntry:
    return LedgerEntry(
        kind=entry.kind,
        request=entry.request,
        code=error.code,
        subcode=error.subcode,
        message=redact(error.message),
        fbtrace_id=error.fbtrace_id,
        recorded_at=entry.recorded_at,
    )


def _merged(
    old: Iterable[JsonDict], recovered: Sequence[JsonDict], primary_key: Sequence[str]
) -> Iterator[JsonDict]:
    def key_of(record: JsonDict) -> str:
        return json.dumps([record.get(c) for c in primary_key], default=str)

    recovered_keys = {key_of(r) for r in recovered}
    for record in old:
        if key_of(record) not in recovered_keys:
            yield record
    yield from recovered


def replay_partition(
    client: MetaAdsClient,
    store: PartitionStore,
    asset_key: dg.AssetKey,
    partition_key: str,
    *,
    run_id: str | None = None,
) -> ReplayOutcome:
    outcome = ReplayOutcome(asset=asset_key.to_user_string(), partition_key=partition_key)
    location = store.location(asset_key, partition_key)
    manifest = store.read_manifest_at(location)
    if manifest is None:
        return outcome
    entries = store.read_manifest_ledger(location, manifest)
    if not entries:
        return outcome
    recovered: list[JsonDict] = []
    still_failing: list[LedgerEntry] = []
    for entry in entries:
        outcome.reissued += 1
        try:
            records, failures = _reissue(client, entry)
        except MetaApiError as error:
            still_failing.append(_still_failing(entry, error))
            continue
        recovered.extend(records)
        still_failing.extend(failures)
        if not failures:
            outcome.recovered_requests += 1
    outcome.still_failing = len(still_failing)
    outcome.recovered_records = len(recovered)
    if outcome.recovered_requests == 0 and not recovered:
        # Nothing came back: leave the committed partition exactly as it is.
        return outcome
    stats = RequestStats.from_dict(manifest.request_stats)
    stats.succeeded_requests = min(
        stats.logical_requests, stats.succeeded_requests + outcome.recovered_requests
    )
    store.commit_partition(
        asset_key,
        partition_key,
        _merged(store.iter_manifest_records(location, manifest), recovered, manifest.primary_key),
        still_failing,
        api_version=manifest.api_version,
        fingerprint=manifest.fingerprint,
        source={**manifest.source, "ledger_replayed": True},
        primary_key=manifest.primary_key,
        request_stats=stats.to_dict(),
        run_id=run_id,
    )
    outcome.committed = True
    logger.info(
        "Replayed %d ledger entr(ies) of %s %s: %d recovered, %d still failing",
        outcome.reissued,
        outcome.asset,
        partition_key,
        outcome.recovered_requests,
        outcome.still_failing,
    )
    return outcome


def replay_ledgers(
    client: MetaAdsClient,
    store: PartitionStore,
    asset_keys: Iterable[dg.AssetKey],
    *,
    run_id: str | None = None,
) -> ReplaySummary:
    summary = ReplaySummary()
    for key, partition_key in list(partitions_with_ledger(store, asset_keys)):
        summary.outcomes.append(replay_partition(client, store, key, partition_key, run_id=run_id))
    return summary
