"""Insights as a page stream: async report runs with reattach, retry and split.

One logical job per slice. The whole account is the first slice; a report that
ends ``Job Failed`` / ``Job Skipped`` or misses its deadline is started once
more, then split by campaign, then by ad set. A leaf slice that still fails is
recorded as a ``LedgerEntry`` in ``Page.failures`` and the day continues.

The resume state names the pending slices, the ``report_run_id`` in flight and
the cursor inside its results, so a resumed attempt reattaches to a running or
finished report instead of starting over. An empty page is yielded right after
a report starts so that its id reaches a checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meta_pipeline.pages import JsonDict, LedgerEntry, Page, RequestStats, ResumeRejected

from . import validation
from .errors import MetaApiError, MetaInputError, MetaInvalidRequestError, MetaPermanentError
from .redact import redact

if TYPE_CHECKING:
    from .meta_api import MetaAdsClient

logger = logging.getLogger(__name__)

REPORT_RUN_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
COMPLETED = "Job Completed"
FAILED_STATES = ("Job Failed", "Job Skipped")
ATTEMPTS_PER_SLICE = 2  # the first run and one retry as is, before splitting
SPLIT_CHILD = {"account": "campaign", "campaign": "adset"}


def build_insights_source(
    client: MetaAdsClient,
    account_id: str,
    *,
    since: dt.date,
    until: dt.date,
    level: str,
    fields: Sequence[str],
    breakdowns: Sequence[str],
    action_attribution_windows: Sequence[str],
    use_async: bool,
) -> InsightsSource:
    from .meta_api import ALL_EFFECTIVE_STATUSES, json_param, request_fingerprint

    account = validation.account_id(account_id)
    if level not in validation.INSIGHTS_LEVELS:
        raise MetaInputError(
            f"Invalid level {level!r}: expected one of {', '.join(validation.INSIGHTS_LEVELS)}"
        )
    since, until = validation.date_range(since, until, today=client.clock.today())
    names = validation.fields(fields)
    level_id = f"{level}_id"
    if level_id not in names:
        names = [level_id, *names]
    cuts = validation.identifiers(breakdowns, source="breakdowns")
    # Attribution windows start with a digit (1d_click), unlike field names.
    windows = validation.identifiers(
        action_attribution_windows,
        source="action_attribution_windows",
        pattern=validation.ATTRIBUTION_WINDOW,
    )
    params: dict[str, Any] = {
        "level": level,
        "fields": ",".join(names),
        "time_range": json_param({"since": since.isoformat(), "until": until.isoformat()}),
        "time_increment": 1,
    }
    if cuts:
        params["breakdowns"] = ",".join(cuts)
    if windows:
        params["action_attribution_windows"] = json_param(windows)
    status_filter: list[dict[str, Any]] = []
    if level != "account":
        # Deleted and archived objects keep their history: ask for every status.
        status_filter.append(
            {
                "field": f"{level}.effective_status",
                "operator": "IN",
                "value": list(ALL_EFFECTIVE_STATUSES),
            }
        )
    spec = {
        "path": "/{account_id}/insights",
        "account_id": account,
        "api_version": client.api_version,
        "params": params,
        "filtering": status_filter,
        "async": use_async,
    }
    return InsightsSource(
        client=client,
        account_id=account,
        base_params=params,
        status_filter=status_filter,
        use_async=use_async,
        fingerprint=request_fingerprint(spec),
        api_version=client.api_version,
        primary_key=(level_id, "date_start", *cuts),
        manifest_extras={
            "endpoint": f"/{account}/insights",
            "level": level,
            "fields": names,
            "breakdowns": cuts,
            "action_attribution_windows": windows,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "time_increment": 1,
            "async": use_async,
        },
    )


@dataclass
class _Cursor:
    """Where a stream is: slices still to do, the report in flight, the cursor in it."""

    pending: list[JsonDict]
    report_run_id: str | None = None
    after: str | None = None
    attempt: int = 0

    def state(self, stats: RequestStats) -> JsonDict | None:
        if not self.pending:
            return None
        return {
            "pending": [dict(s) for s in self.pending],
            "report_run_id": self.report_run_id,
            "after": self.after,
            "attempt": self.attempt,
            "stats": stats.to_dict(),
        }

    def next_slice(self) -> None:
        self.pending.pop(0)
        self.report_run_id = None
        self.after = None
        self.attempt = 0


@dataclass
class InsightsSource:
    """The page stream of an account's daily insights; implements ``pages.PageSource``."""

    client: MetaAdsClient
    account_id: str
    base_params: JsonDict
    status_filter: list[JsonDict]
    use_async: bool
    fingerprint: str
    api_version: str
    primary_key: tuple[str, ...]
    manifest_extras: JsonDict = field(default_factory=dict)
    max_split_depth: int | None = None

    # -- parameters

    def slice_filtering(self, slice_: Mapping[str, Any]) -> list[JsonDict]:
        filtering = list(self.status_filter)
        scope = slice_.get("scope")
        if scope in ("campaign", "adset"):
            filtering.append({"field": f"{scope}.id", "operator": "IN", "value": [slice_["id"]]})
        elif scope not in ("account", "replay"):
            raise ResumeRejected(f"stored slice {slice_!r} is not understood")
        return filtering

    def slice_params(self, slice_: Mapping[str, Any]) -> JsonDict:
        from .meta_api import json_param

        params = dict(self.base_params)
        filtering = self.slice_filtering(slice_)
        if filtering:
            params["filtering"] = json_param(filtering)
        return params

    # -- the stream

    def open(self, resume_state: JsonDict | None) -> Iterator[Page]:
        return self._run(resume_state)

    def _restore(self, resume_state: JsonDict | None) -> tuple[_Cursor, RequestStats]:
        if not resume_state:
            return _Cursor([{"scope": "account"}]), RequestStats()
        pending = resume_state.get("pending")
        rid = resume_state.get("report_run_id")
        after = resume_state.get("after")
        if (
            not isinstance(pending, list)
            or not pending
            or not all(isinstance(s, dict) for s in pending)
            or (rid is not None and not (isinstance(rid, str) and REPORT_RUN_ID.fullmatch(rid)))
            or (after is not None and not isinstance(after, str))
        ):
            raise ResumeRejected("stored insights resume state is not understood")
        cursor = _Cursor(
            [dict(s) for s in pending], rid, after, int(resume_state.get("attempt") or 0)
        )
        return cursor, RequestStats.from_dict(resume_state.get("stats"))

    def _run(self, resume_state: JsonDict | None) -> Iterator[Page]:
        cursor, stats = self._restore(resume_state)
        for s in cursor.pending:
            self.slice_filtering(s)  # reject unknown slices before any request
        resumed = resume_state is not None and bool(cursor.report_run_id or cursor.after)
        while cursor.pending:
            slice_ = cursor.pending[0]
            if not self.use_async:
                yield from self._read_sync(slice_, cursor, stats, resumed)
                resumed = False
                continue
            outcome = yield from self._run_job(slice_, cursor, stats, resumed)
            resumed = False
            if outcome is None:
                continue  # the slice was read to its end
            cursor.attempt += 1
            if cursor.attempt < ATTEMPTS_PER_SLICE:
                logger.warning("insights %s: %s; starting it again", _label(slice_), outcome[0])
                cursor.report_run_id = None
                cursor.after = None
                continue
            children = self._split(slice_, stats)
            if children is not None:
                logger.warning(
                    "insights %s: %s twice; split into %d slices",
                    _label(slice_),
                    outcome[0],
                    len(children),
                )
                cursor.next_slice()
                cursor.pending[0:0] = children
                continue
            entry = self._ledger(slice_, outcome)
            stats.logical_requests += 1
            stats.record_failure("insights_slice")
            logger.error("insights %s failed for good: %s", _label(slice_), entry.message)
            cursor.next_slice()
            yield Page([], cursor.state(stats), stats.copy(), None, (entry,))

    def _read_sync(
        self, slice_: JsonDict, cursor: _Cursor, stats: RequestStats, resumed: bool
    ) -> Iterator[Page]:
        path = f"{self.account_id}/insights"
        yield from self._read(path, self.slice_params(slice_), cursor, stats, resumed, slice_)

    def _read(
        self,
        path: str,
        params: JsonDict,
        cursor: _Cursor,
        stats: RequestStats,
        resumed: bool,
        slice_: JsonDict,
    ) -> Iterator[Page]:
        """Pages of one slice's rows; the last one moves the cursor to the next slice."""
        from .meta_api import ledger_entry_for

        pages = self.client._paginate(
            path,
            params,
            stats=stats,
            account_id=self.account_id,
            after=cursor.after if resumed else None,
        )
        try:
            for page in pages:
                if page.resume_state is None:
                    cursor.next_slice()
                else:
                    cursor.after = page.resume_state["after"]
                yield Page(page.records, cursor.state(stats), page.stats, page.total_count)
        except MetaApiError as exc:
            # Ledger the slice itself: a report's result path cannot be replayed later.
            exc.ledger_entry = ledger_entry_for(  # type: ignore[attr-defined]
                "insights_slice",
                "POST" if self.use_async else "GET",
                f"{self.account_id}/insights",
                self.slice_params(slice_),
                exc,
            )
            raise

    def _run_job(
        self, slice_: JsonDict, cursor: _Cursor, stats: RequestStats, resumed: bool
    ) -> Generator[Page, None, tuple[str, Mapping[str, Any]] | None]:
        """Run (or reattach to) the slice's report; ``None`` when read, else why it failed."""
        client = self.client
        if cursor.report_run_id is None:
            response = client._request(
                "POST",
                f"{self.account_id}/insights",
                self.slice_params(slice_),
                stats=stats,
                account_id=self.account_id,
            )
            rid = response.body.get("report_run_id") if isinstance(response.body, dict) else None
            rid = str(rid) if rid is not None else ""
            if not REPORT_RUN_ID.fullmatch(rid):
                raise MetaPermanentError(
                    f"starting an insights report returned no usable report_run_id: {rid!r}"
                )
            cursor.report_run_id = rid
            cursor.after = None
            logger.info("insights %s: report %s started", _label(slice_), rid)
            # Checkpoint the id so a crash from here on reattaches instead of restarting.
            yield Page([], cursor.state(stats), stats.copy())
            resumed = False
        rid = cursor.report_run_id
        if cursor.after is None or not resumed:
            outcome = self._wait(rid, stats, resumed)
            if outcome is not None:
                return outcome
        yield from self._read(f"{rid}/insights", {}, cursor, stats, resumed, slice_)
        return None

    def _wait(
        self, rid: str, stats: RequestStats, resumed: bool
    ) -> tuple[str, Mapping[str, Any]] | None:
        """Poll until ``Job Completed``; else the failing status and the last answer."""
        client = self.client
        clock = client.clock
        started = clock.now()
        interval = client.async_poll_interval_seconds
        while True:
            try:
                body = client._request("GET", rid, None, stats=stats, account_id=self.account_id)
            except MetaInvalidRequestError as exc:
                if resumed:
                    raise ResumeRejected(f"stored report {rid} refused: {redact(exc)}") from None
                raise
            resumed = False
            answer = body.body if isinstance(body.body, dict) else {}
            status = str(answer.get("async_status") or "")
            if status == COMPLETED:
                return None
            if status in FAILED_STATES:
                stats.record_failure(status.lower().replace(" ", "_"))
                return status, answer
            elapsed = clock.now() - started
            remaining = client.async_deadline_seconds - elapsed
            if remaining <= 0:
                stats.record_failure("job_stuck")
                logger.warning("report %s still %r after %.0fs: abandoned", rid, status, elapsed)
                return f"not completed within {client.async_deadline_seconds:.0f}s", answer
            clock.sleep(min(interval, remaining))
            interval = min(interval * 1.5, client.async_poll_max_interval_seconds)

    def _split(self, slice_: JsonDict, stats: RequestStats) -> list[JsonDict] | None:
        """Smaller slices that together cover ``slice_``, or ``None`` at the deepest level."""
        depth = {"account": 0, "campaign": 1, "adset": 2}.get(str(slice_.get("scope")))
        limit = (
            self.max_split_depth
            if self.max_split_depth is not None
            else self.client.async_max_split_depth
        )
        if depth is None or depth >= limit:
            return None
        child = SPLIT_CHILD[str(slice_["scope"])]
        from .meta_api import json_param

        params: JsonDict = {
            "level": child,
            "fields": f"{child}_id",
            "time_range": self.base_params["time_range"],
        }
        filtering = self.slice_filtering(slice_)
        if filtering:
            params["filtering"] = json_param(filtering)
        ids: list[str] = []
        for page in self.client._paginate(
            f"{self.account_id}/insights", params, stats=stats, account_id=self.account_id
        ):
            for row in page.records:
                value = str(row.get(f"{child}_id", ""))
                if validation.OBJECT_ID.fullmatch(value) and value not in ids:
                    ids.append(value)
        return [{"scope": child, "id": i} for i in sorted(ids)]

    def _ledger(self, slice_: JsonDict, outcome: tuple[str, Mapping[str, Any]]) -> LedgerEntry:
        from .meta_api import ledger_entry_for

        reason, answer = outcome
        message = f"report for {_label(slice_)} {reason}"
        detail = answer.get("error_message")
        if detail:
            message += f": {detail}"
        entry = ledger_entry_for(
            "insights_slice",
            "POST",
            f"{self.account_id}/insights",
            self.slice_params(slice_),
            None,
            message=message,
        )
        code = answer.get("error_code")
        subcode = answer.get("error_subcode")
        return LedgerEntry(
            kind=entry.kind,
            request=entry.request,
            code=int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
            subcode=int(subcode)
            if isinstance(subcode, int | str) and str(subcode).isdigit()
            else None,
            message=entry.message,
            fbtrace_id=None,
            recorded_at=entry.recorded_at,
        )


def _label(slice_: Mapping[str, Any]) -> str:
    scope = slice_.get("scope")
    return str(scope) if scope in ("account", "replay") else f"{scope} {slice_.get('id')}"


def replay_insights_slice(
    client: MetaAdsClient, path: str, params: Mapping[str, Any], request: Mapping[str, Any]
) -> Iterator[Page]:
    """Run one ledgered insights slice again (retry once, no split)."""
    account = path.strip("/").split("/", 1)[0]
    account = validation.account_id(account)
    if path.strip("/") != f"{account}/insights":
        raise MetaInputError(f"not an insights ledger entry: {path!r}")
    source = InsightsSource(
        client=client,
        account_id=account,
        base_params=dict(params),
        status_filter=[],
        use_async=str(request.get("method", "POST")).upper() == "POST",
        fingerprint="replay",
        api_version=client.api_version,
        primary_key=(),
        max_split_depth=0,
    )
    return source._run({"pending": [{"scope": "replay"}], "stats": {}})
