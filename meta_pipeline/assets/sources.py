"""Page sources the assets build on top of the client's edge and insights streams."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from meta_pipeline.assets.common import fail_fast_on_permanent_errors, fail_fast_pages
from meta_pipeline.pages import JsonDict, LedgerEntry, Page, PageSource, RequestStats


def fingerprint_of(spec: Mapping[str, object]) -> str:
    """A stable hash of a logical request description (never holds secrets)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class AnnotatedSource:
    """A client page source plus what the manifest should also say (window, finality)."""

    inner: PageSource
    fingerprint: str
    api_version: str
    primary_key: tuple[str, ...]
    manifest_extras: JsonDict

    @classmethod
    def wrap(cls, inner: PageSource, extras: Mapping[str, object]) -> AnnotatedSource:
        return cls(
            inner=inner,
            fingerprint=inner.fingerprint,
            api_version=inner.api_version,
            primary_key=tuple(inner.primary_key),
            manifest_extras={**inner.manifest_extras, **extras},
        )

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]:
        return fail_fast_pages(self.inner.open(resume_state))


# What a computed source returns: the records, the request counters spent, the quarantined.
SourceResult = tuple[list[JsonDict], RequestStats, list[LedgerEntry]]


@dataclass
class ComputedSource:
    """Records computed in this process: one page, nothing to resume.

    ``compute`` returns the records, the request counters it spent and any
    quarantined failures; it runs only when the IO manager opens the source.
    """

    compute: Callable[[], SourceResult]
    fingerprint: str
    api_version: str
    primary_key: tuple[str, ...]
    manifest_extras: JsonDict = field(default_factory=dict)

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]:
        with fail_fast_on_permanent_errors():
            records, stats, failures = self.compute()
        yield Page(
            records=records,
            resume_state=None,
            stats=stats,
            # What was asked for: the records plus what Meta would not return.
            total_count=len(records) + len(failures),
            failures=failures,
        )


def stats_delta(before: RequestStats, after: RequestStats) -> RequestStats:
    """Counters spent between two snapshots of a client's cumulative direct-call stats."""
    failures = {
        code: count - before.failures_by_code.get(code, 0)
        for code, count in after.failures_by_code.items()
        if count - before.failures_by_code.get(code, 0) > 0
    }
    return RequestStats(
        logical_requests=after.logical_requests - before.logical_requests,
        succeeded_requests=after.succeeded_requests - before.succeeded_requests,
        attempts=after.attempts - before.attempts,
        retries=after.retries - before.retries,
        throttle_waits=after.throttle_waits - before.throttle_waits,
        throttle_wait_seconds=after.throttle_wait_seconds - before.throttle_wait_seconds,
        pacing_wait_seconds=after.pacing_wait_seconds - before.pacing_wait_seconds,
        failures_by_code=failures,
    )


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
