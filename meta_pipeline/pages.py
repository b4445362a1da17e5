"""The page stream: the one type the API client and the GCS IO manager share.

An asset returns a :class:`PageSource`. The IO manager, which owns checkpoints,
opens it at the last checkpoint's resume state (or ``None`` for a fresh start),
writes pages as they arrive, and checkpoints ``Page.resume_state`` once the page
is durable. The client and the IO manager never import each other; both know
only this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

JsonDict = dict[str, Any]


class ResumeRejected(Exception):
    """The API refused the stored resume state (an expired cursor, a vanished report).

    Raised by a page stream opened with a resume state, before it yields anything,
    or mid-stream when Meta invalidates a cursor it has just issued. Either way the
    consumer discards what it wrote and opens the source again from scratch.
    """


@dataclass
class RequestStats:
    """Running request counters of one stream; cumulative across resumed attempts."""

    logical_requests: int = 0
    succeeded_requests: int = 0
    attempts: int = 0
    retries: int = 0
    throttle_waits: int = 0
    throttle_wait_seconds: float = 0.0
    pacing_wait_seconds: float = 0.0
    failures_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def failed_requests(self) -> int:
        return self.logical_requests - self.succeeded_requests

    @property
    def accuracy(self) -> float:
        """Share of logical requests that succeeded (1.0 when nothing was asked)."""
        if self.logical_requests == 0:
            return 1.0
        return self.succeeded_requests / self.logical_requests

    def record_failure(self, code: str) -> None:
        self.failures_by_code[code] = self.failures_by_code.get(code, 0) + 1

    def copy(self) -> RequestStats:
        return RequestStats.from_dict(self.to_dict())

    def to_dict(self) -> JsonDict:
        return {
            "logical_requests": self.logical_requests,
            "succeeded_requests": self.succeeded_requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "throttle_waits": self.throttle_waits,
            "throttle_wait_seconds": round(self.throttle_wait_seconds, 3),
            "pacing_wait_seconds": round(self.pacing_wait_seconds, 3),
            "failures_by_code": dict(sorted(self.failures_by_code.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RequestStats:
        data = data or {}
        return cls(
            logical_requests=int(data.get("logical_requests", 0)),
            succeeded_requests=int(data.get("succeeded_requests", 0)),
            attempts=int(data.get("attempts", 0)),
            retries=int(data.get("retries", 0)),
            throttle_waits=int(data.get("throttle_waits", 0)),
            throttle_wait_seconds=float(data.get("throttle_wait_seconds", 0.0)),
            pacing_wait_seconds=float(data.get("pacing_wait_seconds", 0.0)),
            failures_by_code={
                str(k): int(v) for k, v in (data.get("failures_by_code") or {}).items()
            },
        )


@dataclass(frozen=True)
class LedgerEntry:
    """A request that failed for good without stopping its partition.

    ``request`` is already redacted: method, Graph path (no host, no token) and
    parameters without ``access_token`` or ``appsecret_proof``. It is enough to
    re-issue the request later through the client.
    """

    kind: str  # e.g. "insights_slice", "object"
    request: JsonDict
    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str | None
    recorded_at: str  # ISO-8601 UTC

    def to_dict(self) -> JsonDict:
        return {
            "kind": self.kind,
            "request": self.request,
            "code": self.code,
            "subcode": self.subcode,
            "message": self.message,
            "fbtrace_id": self.fbtrace_id,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        return cls(
            kind=str(data["kind"]),
            request=dict(data["request"]),
            code=data.get("code"),
            subcode=data.get("subcode"),
            message=str(data.get("message", "")),
            fbtrace_id=data.get("fbtrace_id"),
            recorded_at=str(data["recorded_at"]),
        )


@dataclass(frozen=True)
class Page:
    """One page of API records and the state needed to continue after it.

    ``resume_state`` is JSON-serialisable and opaque to the consumer: handing it
    back to ``PageSource.open`` continues right after this page. ``None`` means
    the stream has nothing after this page.
    """

    records: Sequence[JsonDict]
    resume_state: JsonDict | None
    stats: RequestStats
    total_count: int | None = None
    failures: Sequence[LedgerEntry] = ()


@runtime_checkable
class PageSource(Protocol):
    """What an extraction asset returns; the IO manager opens and consumes it.

    ``fingerprint`` identifies the logical request (edge, fields, filters, window)
    without secrets; a checkpoint is only reused by a source with the same one.
    """

    fingerprint: str
    api_version: str
    primary_key: tuple[str, ...]
    manifest_extras: JsonDict

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]: ...
