"""MetaAdsClient: the one piece of code that talks to the Meta Graph API.

A ``dagster.ConfigurableResource`` on ``requests`` and ``tenacity``. Every
logical request goes through :meth:`MetaAdsClient._request`: pacing from the
usage headers, one HTTP attempt, classification of the answer, and retries of
transient failures only, bounded in attempts and in seconds, sleeping on an
injectable clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import random
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import dagster as dg
import msgspec
import requests
import tenacity
from pydantic import Field, PrivateAttr

from meta_pipeline.pages import (
    JsonDict,
    LedgerEntry,
    Page,
    PageSource,
    RequestStats,
    ResumeRejected,
)

from . import validation
from .clock import Clock, SystemClock
from .errors import (
    ForeignNextUrlError,
    MetaApiError,
    MetaConfigError,
    MetaInputError,
    MetaInvalidRequestError,
    MetaPermanentError,
    MetaReduceDataError,
    MetaThrottledError,
    MetaTransientError,
    MetaTransportError,
    RetryBudgetExhausted,
    classify_error,
)
from .pacing import Pacer, throttle_hint_seconds
from .redact import install_log_redaction, redact, redact_value, register_secrets

logger = logging.getLogger(__name__)

API_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
OBJECT_EDGES: dict[str, str | None] = {
    "campaigns": "campaign",
    "adsets": "adset",
    "ads": "ad",
    "adcreatives": None,  # creatives have no updated_time or effective_status filter
    "activities": None,  # filtered by since/until (unix seconds) instead
}
ALL_EFFECTIVE_STATUSES = (
    "ACTIVE",
    "PAUSED",
    "DELETED",
    "ARCHIVED",
    "IN_PROCESS",
    "WITH_ISSUES",
    "CAMPAIGN_PAUSED",
    "ADSET_PAUSED",
    "DISAPPROVED",
    "PENDING_REVIEW",
    "PREAPPROVED",
    "PENDING_BILLING_INFO",
)
ACCOUNT_LIST_FIELDS = ("account_id", "id", "name", "timezone_name", "currency", "account_status")
BATCH_LIMIT = 50
MAX_STALLED_PAGES = 20  # empty pages in a row that hand back the same cursor  # Graph's cap on ids per ?ids= / batch request


_DECODER = msgspec.json.Decoder()


def parse_json(raw: bytes) -> Any:
    """An answer's JSON, as ``json.loads`` reads it (integers exact, last duplicate key wins).

    msgspec parses a page and builds its records for three quarters of the CPU of
    ``json.loads`` (the API parse is the largest cost per record); what it refuses
    (NaN, lone surrogates, other encodings than UTF-8) is left to ``json.loads``, which
    raises ``ValueError`` where it always did.
    """
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:
        return json.loads(raw)


def json_param(value: Any) -> str:
    """Encode a list/dict parameter the way the official SDK does."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def request_fingerprint(spec: Mapping[str, Any]) -> str:
    """sha256 of a logical request description (never contains secrets)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class PageSizer:
    """Page size of one stream: halved on "reduce the amount of data", restored gradually."""

    def __init__(self, configured: int, *, restore_after: int = 3) -> None:
        self.configured = configured
        self.current = configured
        self.restore_after = restore_after
        self._successes = 0
        self.history: list[int] = [configured]

    def shrink(self) -> None:
        self.current = max(1, self.current // 2)
        self._successes = 0
        self.history.append(self.current)

    def success(self) -> None:
        if self.current >= self.configured:
            return
        self._successes += 1
        if self._successes >= self.restore_after:
            self.current = min(self.configured, self.current * 2)
            self._successes = 0
            self.history.append(self.current)


@dataclass
class Response:
    body: Any
    headers: Mapping[str, str]


def ledger_entry_for(
    kind: str,
    method: str,
    path: str,
    params: Mapping[str, Any],
    error: MetaApiError | None,
    message: str | None = None,
) -> LedgerEntry:
    """A redacted record of a request that failed for good, enough to re-issue it."""
    request = redact_value(
        {
            "method": method,
            "path": "/" + path.strip("/"),
            "params": {
                k: v
                for k, v in params.items()
                if k not in ("access_token", "appsecret_proof", "after", "limit")
            },
        }
    )
    return LedgerEntry(
        kind=kind,
        request=request,
        code=error.code if error else None,
        subcode=error.subcode if error else None,
        message=redact(message or (error.message if error else "failed")),
        fbtrace_id=error.fbtrace_id if error else None,
        recorded_at=utc_now_iso(),
    )


class MetaAdsClient(dg.ConfigurableResource):
    """Graph API client for ad accounts, their objects and their insights.

    Use it as a Dagster resource (the session is created in
    ``setup_for_execution``) or, outside Dagster, as
    ``with MetaAdsClient(access_token=...).open() as client: ...``.
    """

    access_token: str = Field(description="Graph API access token (META_ACCESS_TOKEN).")
    app_secret: str | None = Field(
        default=None, description="App secret; enables appsecret_proof (META_APP_SECRET)."
    )
    graph_url: str = Field(default="https://graph.facebook.com", description="META_GRAPH_URL")
    api_version: str = Field(default="v25.0", description="META_API_VERSION, like v25.0")
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0
    page_size: int = Field(default=500, description="Records per page (limit).")
    page_size_restore_after: int = Field(
        default=3, description="Successful pages before a halved page size doubles again."
    )
    max_attempts: int = Field(default=8, description="Attempts per logical request.")
    max_retry_seconds: float = Field(
        default=1800.0, description="Total seconds one logical request may spend retrying."
    )
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    pacing_enabled: bool = True
    pacing_threshold_pct: float = Field(
        default=60.0, description="Usage % above which calls are slowed down."
    )
    pacing_window_seconds: float = Field(
        default=300.0, description="Decay window of Meta's usage counters when headers omit it."
    )
    pacing_max_wait_seconds: float = 600.0
    async_poll_interval_seconds: float = 10.0
    async_poll_max_interval_seconds: float = 120.0
    async_deadline_seconds: float = Field(
        default=3600.0, description="A report not completed after this long is abandoned."
    )
    async_max_split_depth: int = Field(
        default=2, description="0: never split; 1: split by campaign; 2: then by ad set."
    )

    _session: requests.Session | None = PrivateAttr(default=None)
    _clock: Clock = PrivateAttr(default_factory=SystemClock)
    _pacer: Pacer | None = PrivateAttr(default=None)
    _rng: random.Random = PrivateAttr(default_factory=random.Random)
    _stats: RequestStats = PrivateAttr(default_factory=RequestStats)
    _proof: str | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ lifecycle

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._start(None)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def open(self, clock: Clock | None = None) -> Self:
        """Start a session outside Dagster (CLI, tests); use as a context manager."""
        self._start(clock)
        return self

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Self:
        if self._session is None:
            self._start(None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def validate_settings(self) -> None:
        """Raise ``MetaConfigError`` (one line, naming the setting) on a bad setting."""
        token = self.access_token
        if not isinstance(token, str) or not token.strip():
            raise MetaConfigError("META_ACCESS_TOKEN (access_token) is not set")
        if token.strip() != token or any(c.isspace() for c in token):
            raise MetaConfigError("META_ACCESS_TOKEN (access_token) is malformed: contains spaces")
        if self.app_secret is not None and any(c.isspace() for c in self.app_secret):
            raise MetaConfigError("META_APP_SECRET (app_secret) is malformed: contains spaces")
        if not isinstance(self.api_version, str) or not API_VERSION.fullmatch(self.api_version):
            raise MetaConfigError(
                f"META_API_VERSION (api_version) {self.api_version!r} must look like v25.0"
            )
        parsed = urllib.parse.urlsplit(self.graph_url)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or parsed.path not in ("", "/")
            or parsed.query
            or parsed.fragment
            or parsed.username
        ):
            raise MetaConfigError(
                f"META_GRAPH_URL (graph_url) {self.graph_url!r} must look like "
                "https://graph.facebook.com (scheme and host only)"
            )
        positive = {
            "connect_timeout_seconds": self.connect_timeout_seconds,
            "read_timeout_seconds": self.read_timeout_seconds,
            "max_retry_seconds": self.max_retry_seconds,
            "backoff_base_seconds": self.backoff_base_seconds,
            "backoff_max_seconds": self.backoff_max_seconds,
            "pacing_window_seconds": self.pacing_window_seconds,
            "async_poll_interval_seconds": self.async_poll_interval_seconds,
            "async_poll_max_interval_seconds": self.async_poll_max_interval_seconds,
            "async_deadline_seconds": self.async_deadline_seconds,
        }
        for name, value in positive.items():
            if not value > 0:
                raise MetaConfigError(f"{name} {value!r} must be a positive number of seconds")
        if not 1 <= self.page_size <= 5000:
            raise MetaConfigError(f"page_size {self.page_size!r} must be between 1 and 5000")
        if self.max_attempts < 1:
            raise MetaConfigError(f"max_attempts {self.max_attempts!r} must be at least 1")
        if self.page_size_restore_after < 1:
            raise MetaConfigError(
                f"page_size_restore_after {self.page_size_restore_after!r} must be at least 1"
            )
        if not 0 <= self.pacing_threshold_pct < 100:
            raise MetaConfigError(
                f"pacing_threshold_pct {self.pacing_threshold_pct!r} must be in [0, 100)"
            )
        if self.async_max_split_depth not in (0, 1, 2):
            raise MetaConfigError(
                f"async_max_split_depth {self.async_max_split_depth!r} must be 0, 1 or 2"
            )

    def _start(self, clock: Clock | None) -> None:
        self.validate_settings()
        if self.app_secret:
            self._proof = hmac.new(
                self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
            ).hexdigest()
        register_secrets([self.access_token, self.app_secret, self._proof])
        install_log_redaction()
        if clock is not None:
            self._clock = clock
        self._pacer = Pacer(
            enabled=self.pacing_enabled,
            threshold_pct=self.pacing_threshold_pct,
            window_seconds=self.pacing_window_seconds,
            max_wait_seconds=self.pacing_max_wait_seconds,
        )
        if self._session is None:
            self._session = _new_session(self.graph_url)

    # ------------------------------------------------------------------ properties

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def stats(self) -> RequestStats:
        """Counters of the direct calls (get, get_account, ...); streams keep their own."""
        return self._stats

    @property
    def base_url(self) -> str:
        return f"{self.graph_url.rstrip('/')}/{self.api_version}"

    # ------------------------------------------------------------------ HTTP core

    def _session_or_fail(self) -> requests.Session:
        if self._session is None:
            raise MetaConfigError(
                "MetaAdsClient is not open: use it as a Dagster resource or call .open()"
            )
        return self._session

    def _send_once(
        self, method: str, path: str, params: Mapping[str, Any], account_id: str | None
    ) -> Response:
        session = self._session_or_fail()
        url = f"{self.base_url}/{path}"
        sent = dict(params)
        if self._proof:
            sent["appsecret_proof"] = self._proof
        headers = {"Authorization": f"Bearer {self.access_token}"}
        timeout = (self.connect_timeout_seconds, self.read_timeout_seconds)
        try:
            if method == "GET":
                resp = session.get(
                    url, params=sent, headers=headers, timeout=timeout, allow_redirects=False
                )
            else:
                resp = session.post(
                    url, data=sent, headers=headers, timeout=timeout, allow_redirects=False
                )
            raw = resp.content  # a truncated body raises here
        except requests.Timeout as exc:
            raise MetaTransportError(
                f"timed out: {redact(type(exc).__name__)}", path=path
            ) from None
        except requests.RequestException as exc:
            raise MetaTransportError(
                f"transport error {type(exc).__name__}: {redact(exc)}", path=path
            ) from None
        pacer = self._pacer
        if pacer is not None:
            pacer.observe(resp.headers, account_id, self._clock.now())
        try:
            body = parse_json(raw) if raw else None
        except ValueError:
            body = None
            if resp.status_code < 400:
                content_type = resp.headers.get("Content-Type", "?")
                raise MetaTransportError(
                    f"HTTP {resp.status_code} answer is not JSON ({redact(content_type)}, "
                    f"{len(raw)} bytes)",
                    http_status=resp.status_code,
                    path=path,
                ) from None
        if resp.status_code >= 300 or (isinstance(body, dict) and "error" in body):
            raise classify_error(
                resp.status_code,
                body if isinstance(body, dict) else None,
                path=path,
                throttle_wait_seconds=throttle_hint_seconds(resp.headers),
            )
        if not isinstance(body, dict | list):
            raise MetaTransportError(
                f"HTTP {resp.status_code} answer has no JSON object",
                http_status=resp.status_code,
                path=path,
            )
        return Response(body, resp.headers)

    def _backoff(self, attempt_number: int) -> float:
        ceiling = min(
            self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt_number - 1)
        )
        # "Equal jitter": never less than half the step, so waits stay meaningful.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        stats: RequestStats | None = None,
        account_id: str | None = None,
        sizer: PageSizer | None = None,
        expect_data: bool = False,
    ) -> Response:
        """One logical request: paced, retried on transient failures within the budget."""
        path = validation.graph_path(path)
        stats = stats if stats is not None else self._stats
        base_params = dict(params or {})
        clock = self._clock
        started = clock.now()
        stats.logical_requests += 1

        def attempt() -> Response:
            pacer = self._pacer
            if pacer is not None:
                delay = pacer.delay_seconds(account_id, clock.now())
                # Pacing counts against the request's time budget like any other wait.
                delay = min(delay, max(0.0, self.max_retry_seconds - (clock.now() - started)))
                if delay > 0:
                    logger.debug("pacing: waiting %.2fs before %s /%s", delay, method, path)
                    clock.sleep(delay)
                    stats.pacing_wait_seconds += delay
            stats.attempts += 1
            sent = dict(base_params)
            if sizer is not None:
                sent["limit"] = sizer.current
            response = self._send_once(method, path, sent, account_id)
            if expect_data and not (
                isinstance(response.body, dict) and isinstance(response.body.get("data"), list)
            ):
                # A 200 without a data list is a broken answer, never an empty page.
                raise MetaTransportError(f"answer of /{path} has no data list", path=path)
            return response

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = self._backoff(state.attempt_number)
            if isinstance(exc, MetaThrottledError):
                return max(backoff, exc.min_wait_seconds)
            return backoff

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            stats.retries += 1
            if isinstance(exc, MetaThrottledError):
                stats.throttle_waits += 1
                stats.throttle_wait_seconds += state.upcoming_sleep
            if isinstance(exc, MetaReduceDataError) and sizer is not None:
                sizer.shrink()
                logger.info("page size halved to %d for /%s", sizer.current, path)
            logger.warning(
                "retrying %s /%s in %.1fs (attempt %d failed: %s)",
                method,
                path,
                state.upcoming_sleep,
                state.attempt_number,
                redact(exc) if exc else "?",
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(MetaTransientError),
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | _StopBeyondBudget(clock, started, self.max_retry_seconds),
            wait=wait,
            sleep=clock.sleep,
            before_sleep=before_sleep,
            reraise=False,
        )
        try:
            response = retrying(attempt)
        except tenacity.RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            assert isinstance(last, MetaApiError)
            error = RetryBudgetExhausted(
                last, exhausted.last_attempt.attempt_number, clock.now() - started
            )
            stats.record_failure(error.failure_key)
            logger.error("%s", redact(error))
            raise error from None
        except MetaApiError as error:
            stats.record_failure(error.failure_key)
            logger.error("%s %s failed: %s", method, path, redact(error))
            raise
        stats.succeeded_requests += 1
        if sizer is not None:
            sizer.success()
        return response

    # ------------------------------------------------------------------ paging

    def _check_next(self, next_url: object) -> None:
        """Refuse a ``paging.next`` on any host but ``graph_url`` (we never follow it)."""
        if not isinstance(next_url, str):
            raise MetaPermanentError("paging.next is not a URL")
        ours = urllib.parse.urlsplit(self.graph_url)
        theirs = urllib.parse.urlsplit(next_url)
        if (theirs.scheme, theirs.hostname, theirs.port) != (ours.scheme, ours.hostname, ours.port):
            raise ForeignNextUrlError(
                f"paging.next points to foreign host {redact(theirs.hostname or '?')!r}, "
                f"not {ours.hostname!r}: refusing to continue (the token is never sent there)"
            )

    def _paginate(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        stats: RequestStats,
        account_id: str | None,
        after: str | None = None,
        state_extra: Mapping[str, Any] | None = None,
        ledger_kind: str = "edge",
    ) -> Iterator[Page]:
        """Pages of an edge by ``cursors.after``, our own parameters every time.

        Yields non-empty pages as they come and always a last page (possibly
        empty) whose ``resume_state`` is ``None``. Raises ``ResumeRejected``
        when the starting cursor is refused.
        """
        sizer = PageSizer(self.page_size, restore_after=self.page_size_restore_after)
        resumed_cursor = after
        stalls = 0
        while True:
            request_params = dict(params)
            if after:
                request_params["after"] = after
            try:
                response = self._request(
                    "GET",
                    path,
                    request_params,
                    stats=stats,
                    account_id=account_id,
                    sizer=sizer,
                    expect_data=True,
                )
            except MetaInvalidRequestError as exc:
                if after is not None:
                    # The same request worked without this cursor: the cursor is what Meta
                    # refuses (stored, or invalidated since it was issued). Start over.
                    which = "stored" if after == resumed_cursor else "fresh"
                    raise ResumeRejected(
                        f"{which} cursor refused for /{path}: {redact(exc)}"
                    ) from None
                exc.ledger_entry = ledger_entry_for(  # type: ignore[attr-defined]
                    ledger_kind, "GET", path, params, exc
                )
                raise
            except MetaApiError as exc:
                exc.ledger_entry = ledger_entry_for(  # type: ignore[attr-defined]
                    ledger_kind, "GET", path, params, exc
                )
                raise
            resumed_cursor = None
            body: dict[str, Any] = response.body
            data = body["data"]
            summary = body.get("summary")
            total = summary.get("total_count") if isinstance(summary, dict) else None
            raw_paging = body.get("paging")
            paging: dict[str, Any] = raw_paging if isinstance(raw_paging, dict) else {}
            next_url = paging.get("next")
            if not next_url:
                state = None
                yield Page(data, state, stats.copy(), _int_or_none(total))
                return
            self._check_next(next_url)
            raw_cursors = paging.get("cursors")
            cursor = raw_cursors.get("after") if isinstance(raw_cursors, dict) else None
            if not isinstance(cursor, str) or not cursor:
                raise MetaPermanentError(f"answer of /{path} has paging.next but no cursors.after")
            if cursor == after:
                # An empty page may hand back the cursor it was asked with (try again);
                # a full page doing so would repeat its records forever.
                stalls += 1
                if data or stalls > MAX_STALLED_PAGES:
                    raise MetaPermanentError(f"answer of /{path} repeats its cursor: paging loop")
            else:
                stalls = 0
            after = cursor
            if data:
                state = {**(state_extra or {}), "after": cursor, "stats": stats.to_dict()}
                yield Page(data, state, stats.copy(), _int_or_none(total))

    # ------------------------------------------------------------------ public API

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict:
        """One logical GET of a Graph path (relative, e.g. ``act_1`` or ``me/adaccounts``)."""
        response = self._request("GET", path, params)
        if not isinstance(response.body, dict):
            raise MetaTransportError(f"answer of /{path} is not a JSON object", path=path)
        return response.body

    def list_ad_accounts(self) -> list[dict]:
        """Every ad account the token sees (``/me/adaccounts``, all pages)."""
        params = {"fields": ",".join(ACCOUNT_LIST_FIELDS)}
        records: list[dict] = []
        for page in self._paginate("me/adaccounts", params, stats=self._stats, account_id=None):
            records.extend(page.records)
        return records

    def get_account(self, account_id: str, fields: Sequence[str]) -> dict:
        account = validation.account_id(account_id)
        names = validation.fields(fields)
        response = self._request("GET", account, {"fields": ",".join(names)}, account_id=account)
        if not isinstance(response.body, dict):
            raise MetaTransportError(f"answer of /{account} is not a JSON object", path=account)
        return response.body

    def get_objects(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict]:
        """Objects by id (``?ids=``, 50 at a time); ids Graph cannot find are left out."""
        checked = [validation.object_id(i) for i in ids]
        names = validation.fields(fields)
        found: dict[str, dict] = {}
        for start in range(0, len(checked), BATCH_LIMIT):
            chunk = list(dict.fromkeys(checked[start : start + BATCH_LIMIT]))
            found.update(self._get_chunk(chunk, names))
        return found

    def _get_chunk(self, ids: list[str], names: list[str]) -> dict[str, dict]:
        """One ``?ids=`` read; ids Graph says do not exist are dropped and the rest re-read.

        A missing id fails the whole request, so those probing failures are not
        counted as failed logical requests: the caller sees the missing ids and
        accounts for them itself.
        """
        remaining = list(ids)
        while remaining:
            scratch = RequestStats()
            try:
                response = self._request(
                    "GET",
                    "",
                    {"ids": ",".join(remaining), "fields": ",".join(names)},
                    stats=scratch,
                )
            except MetaInvalidRequestError as exc:
                _fold_stats(self._stats, scratch, keep_failures=False)
                named = set(_MISSING_ALIASES.findall(exc.message)) & set(remaining)
                if named:
                    logger.warning("objects %s do not exist; left out", ", ".join(sorted(named)))
                    remaining = [i for i in remaining if i not in named]
                    continue
                if len(remaining) == 1:
                    logger.warning("object %s not readable; left out", remaining[0])
                    return {}
                middle = len(remaining) // 2
                return {
                    **self._get_chunk(remaining[:middle], names),
                    **self._get_chunk(remaining[middle:], names),
                }
            except MetaApiError:
                _fold_stats(self._stats, scratch, keep_failures=True)
                raise
            _fold_stats(self._stats, scratch, keep_failures=True)
            body = response.body
            if not isinstance(body, dict):
                raise MetaTransportError("answer of ?ids= is not a JSON object")
            return {str(k): v for k, v in body.items() if isinstance(v, dict)}
        return {}

    def edge_source(
        self,
        account_id: str,
        edge: str,
        fields: Sequence[str],
        *,
        updated_since: dt.datetime | None = None,
        updated_until: dt.datetime | None = None,
        all_statuses: bool = True,
        params: Mapping[str, Any] | None = None,
    ) -> EdgeSource:
        """A page stream of an account's objects (campaigns, adsets, ads, adcreatives, activities)."""
        account = validation.account_id(account_id)
        if edge not in OBJECT_EDGES:
            raise MetaInputError(
                f"Unknown edge {edge!r}: expected one of {', '.join(sorted(OBJECT_EDGES))}"
            )
        names = validation.fields(fields)
        if edge != "activities" and "id" not in names:
            names = ["id", *names]
        for name, value in (("updated_since", updated_since), ("updated_until", updated_until)):
            if value is not None and (not isinstance(value, dt.datetime) or value.tzinfo is None):
                raise MetaInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if updated_since and updated_until and updated_since >= updated_until:
            raise MetaInputError(
                f"Invalid window: updated_since {updated_since} is not before {updated_until}"
            )
        extra = dict(params or {})
        for key in extra:
            if not validation.IDENTIFIER.fullmatch(str(key)) or key in (
                "access_token",
                "appsecret_proof",
                "after",
                "limit",
            ):
                raise MetaInputError(f"Invalid extra parameter {key!r}")
        level = OBJECT_EDGES[edge]
        request: dict[str, Any] = {"fields": ",".join(names)}
        filtering: list[dict[str, Any]] = []
        if edge == "activities":
            if updated_since:
                request["since"] = int(updated_since.timestamp())
            if updated_until:
                request["until"] = int(updated_until.timestamp())
        else:
            request["summary"] = "true"
            if level is not None:
                if updated_since:
                    filtering.append(
                        {
                            "field": f"{level}.updated_time",
                            "operator": "GREATER_THAN_OR_EQUAL",
                            "value": int(updated_since.timestamp()),
                        }
                    )
                if updated_until:
                    filtering.append(
                        {
                            "field": f"{level}.updated_time",
                            "operator": "LESS_THAN",
                            "value": int(updated_until.timestamp()),
                        }
                    )
                if all_statuses:
                    request["effective_status"] = json_param(list(ALL_EFFECTIVE_STATUSES))
            elif updated_since or updated_until:
                raise MetaInputError(
                    f"edge {edge!r} cannot be filtered by updated time; read it whole"
                )
        if filtering:
            request["filtering"] = json_param(filtering)
        for key, value in extra.items():
            request[key] = value if isinstance(value, str | int | float) else json_param(value)
        path = f"{account}/{edge}"
        spec = {
            "path": "/{account_id}/" + edge,
            "account_id": account,
            "api_version": self.api_version,
            "params": request,
        }
        return EdgeSource(
            client=self,
            account_id=account,
            path=path,
            params=request,
            fingerprint=request_fingerprint(spec),
            api_version=self.api_version,
            primary_key=("id",) if edge != "activities" else _ACTIVITY_KEY,
            manifest_extras={
                "endpoint": f"/{path}",
                "edge": edge,
                "fields": names,
                "filtering": filtering,
                "all_statuses": all_statuses and level is not None,
                "time_filtered": bool(updated_since or updated_until),
            },
        )

    def insights_source(
        self,
        account_id: str,
        *,
        since: dt.date,
        until: dt.date,
        level: str = "ad",
        fields: Sequence[str],
        breakdowns: Sequence[str] = (),
        action_attribution_windows: Sequence[str] = (),
        use_async: bool = True,
    ) -> PageSource:
        """Daily insights rows (``time_increment=1``) of an account for ``since..until``."""
        from .reports import build_insights_source

        return build_insights_source(
            self,
            account_id,
            since=since,
            until=until,
            level=level,
            fields=fields,
            breakdowns=breakdowns,
            action_attribution_windows=action_attribution_windows,
            use_async=use_async,
        )

    def replay(self, entry: LedgerEntry) -> Iterator[Page]:
        """Re-issue a ledger entry's request; pages carry fresh stats and failures."""
        request = entry.request
        method = str(request.get("method", "GET")).upper()
        path = validation.graph_path(str(request.get("path", "")))
        params = dict(request.get("params") or {})
        if entry.kind == "insights_slice":
            from .reports import replay_insights_slice

            yield from replay_insights_slice(self, path, params, request)
            return
        if method != "GET":
            raise MetaInputError(f"cannot replay a {method} ledger entry of kind {entry.kind!r}")
        if entry.kind == "object":
            stats = RequestStats()
            response = self._request("GET", path, params, stats=stats, account_id=_account_of(path))
            body = response.body if isinstance(response.body, dict) else {}
            yield Page([body] if body else [], None, stats.copy())
            return
        account = _account_of(path)
        yield from self._paginate(path, params, stats=RequestStats(), account_id=account)


class _StopBeyondBudget(tenacity.stop.stop_base):
    """Stop before a sleep that would end outside the time budget (on our clock)."""

    def __init__(self, clock: Clock, started: float, budget_seconds: float) -> None:
        self.clock = clock
        self.started = started
        self.budget_seconds = budget_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        elapsed = self.clock.now() - self.started
        return elapsed + retry_state.upcoming_sleep > self.budget_seconds


_ACTIVITY_KEY = ("object_id", "event_type", "event_time")


_MISSING_ALIASES = re.compile(r"(?<![0-9])([0-9]{1,30})(?![0-9])")


def _fold_stats(target: RequestStats, scratch: RequestStats, *, keep_failures: bool) -> None:
    """Add a scratch stream's counters to ``target`` (optionally without its failures)."""
    target.attempts += scratch.attempts
    target.retries += scratch.retries
    target.throttle_waits += scratch.throttle_waits
    target.throttle_wait_seconds += scratch.throttle_wait_seconds
    target.pacing_wait_seconds += scratch.pacing_wait_seconds
    target.succeeded_requests += scratch.succeeded_requests
    if keep_failures:
        target.logical_requests += scratch.logical_requests
        for code, count in scratch.failures_by_code.items():
            target.failures_by_code[code] = target.failures_by_code.get(code, 0) + count
    else:
        target.logical_requests += scratch.succeeded_requests


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _account_of(path: str) -> str | None:
    head = path.strip("/").split("/", 1)[0]
    return head if head.startswith("act_") else None


@dataclass
class EdgeSource:
    """The page stream of one object edge; implements ``pages.PageSource``."""

    client: MetaAdsClient
    account_id: str
    path: str
    params: JsonDict
    fingerprint: str
    api_version: str
    primary_key: tuple[str, ...]
    manifest_extras: JsonDict = field(default_factory=dict)

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]:
        state = resume_state or {}
        stats = RequestStats.from_dict(state.get("stats"))
        after = state.get("after")
        if after is not None and not isinstance(after, str):
            raise ResumeRejected("stored resume state has no usable cursor")
        return self.client._paginate(
            self.path,
            self.params,
            stats=stats,
            account_id=self.account_id,
            after=after,
        )


def _new_session(graph_url: str) -> requests.Session:
    """A session that reads proxy and CA settings from the environment once, here.

    With ``trust_env`` requests reads them again, and ``~/.netrc``, on every call: about a
    third of the client's CPU per request against a local server. Reading ``.netrc`` could
    also replace the bearer token with a netrc entry's credentials for the same host.
    """
    session = requests.Session()
    session.headers["User-Agent"] = "meta-pipeline"
    session.proxies.update(requests.utils.get_environ_proxies(graph_url))
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if ca_bundle:
        session.verify = ca_bundle
    session.trust_env = False
    return session
