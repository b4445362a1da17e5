"""The simulated Graph API as an ASGI app (starlette), served by uvicorn.

One :class:`Simulator` holds the world, the clock, the budgets, the fault plan
and the report runs. Every request goes through the same steps: route, count,
authenticate, pick a fault, add latency, spend budget, answer, then alter the
answer if the fault says so. Handlers are synchronous and run under one lock,
so test threads can inject faults or move the clock while a client is reading.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import world as w
from .errors import GraphError, invalid_parameter, unknown_field, unknown_object
from .faults import (
    ERROR_FAULTS,
    FAULTS,
    JOB_FAULTS,
    PAGING_FAULTS,
    PROFILES,
    THROTTLE_FAULTS,
    TRANSPORT_FAULTS,
    FaultPlan,
    check_fault,
    fault_error,
)
from .limits import INSIGHTS, MANAGEMENT, RateLimiter, Throttle, business_use_case_entry
from .reports import COMPLETED, ReportStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
CONTENT_TYPE = "text/javascript; charset=UTF-8"
FB_REV = "1029384756"
DEFAULT_LIMIT = 25
MAX_LIMIT = 5000
MAX_BATCH = 50
_VERSION = re.compile(r"v[0-9]+\.[0-9]+")
_DIGITS = re.compile(r"[0-9]{1,20}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    # Valid at Meta but absent from our objects: asking for them is not an error.
    "campaigns": (
        "stop_time",
        "spend_cap",
        "adlabels",
        "issues_info",
        "recommendations",
        "source_campaign_id",
        "pacing_type",
        "promoted_object",
        "smart_promotion_type",
        "can_use_spend_cap",
        "boosted_object_id",
        "topline_id",
        "last_budget_toggling_time",
        "daily_min_spend_target",
        "daily_spend_cap",
        "lifetime_min_spend_target",
        "lifetime_spend_cap",
        "daily_budget",
        "lifetime_budget",
    ),
    "adsets": (
        "end_time",
        "promoted_object",
        "bid_strategy",
        "lifetime_budget",
        "lifetime_imps",
        "destination_type",
        "attribution_spec",
        "pacing_type",
        "is_dynamic_creative",
        "learning_stage_info",
        "adlabels",
        "bid_info",
        "recommendations",
        "source_adset_id",
        "issues_info",
    ),
    "ads": (
        "tracking_specs",
        "conversion_specs",
        "recommendations",
        "source_ad_id",
        "adlabels",
        "bid_amount",
        "last_updated_by_app_id",
        "preview_shareable_link",
        "ad_review_feedback",
        "issues_info",
    ),
    "adcreatives": (
        "image_url",
        "image_hash",
        "object_story_spec",
        "object_story_id",
        "effective_object_story_id",
        "url_tags",
        "video_id",
        "asset_feed_spec",
        "link_url",
        "instagram_permalink_url",
        "effective_instagram_story_id",
        "actor_id",
        "template_url",
        "product_set_id",
        "object_url",
        "adlabels",
        "instagram_actor_id",
    ),
    "activities": ("account_id",),
}
OBJECT_FIELDS: dict[str, frozenset[str]] = {
    "campaigns": frozenset(
        (
            "id",
            "account_id",
            "name",
            "status",
            "configured_status",
            "effective_status",
            "objective",
            "buying_type",
            "bid_strategy",
            "special_ad_categories",
            "start_time",
            "created_time",
            "updated_time",
            "budget_remaining",
            *EXTRA_FIELDS["campaigns"],
        )
    ),
    "adsets": frozenset(
        (
            "id",
            "account_id",
            "campaign_id",
            "name",
            "status",
            "configured_status",
            "effective_status",
            "billing_event",
            "optimization_goal",
            "bid_amount",
            "daily_budget",
            "budget_remaining",
            "targeting",
            "start_time",
            "created_time",
            "updated_time",
            "campaign",
            *EXTRA_FIELDS["adsets"],
        )
    ),
    "ads": frozenset(
        (
            "id",
            "account_id",
            "campaign_id",
            "adset_id",
            "name",
            "status",
            "configured_status",
            "effective_status",
            "creative",
            "bid_type",
            "created_time",
            "updated_time",
            "campaign",
            "adset",
            *EXTRA_FIELDS["ads"],
        )
    ),
    "adcreatives": frozenset(
        (
            "id",
            "account_id",
            "name",
            "title",
            "body",
            "object_type",
            "status",
            "call_to_action_type",
            "thumbnail_url",
            *EXTRA_FIELDS["adcreatives"],
        )
    ),
    "activities": frozenset(
        (
            "actor_id",
            "actor_name",
            "application_id",
            "application_name",
            "date_time_in_timezone",
            "event_time",
            "event_type",
            "extra_data",
            "object_id",
            "object_name",
            "object_type",
            "translated_event_type",
            *EXTRA_FIELDS["activities"],
        )
    ),
}
ACCOUNT_FIELDS = frozenset(
    (
        "id",
        "account_id",
        "name",
        "currency",
        "timezone_name",
        "timezone_offset_hours_utc",
        "account_status",
        "business_name",
        "created_time",
        "disable_reason",
        "amount_spent",
        "balance",
        "spend_cap",
        "min_daily_budget",
        "owner",
        "funding_source",
        "business",
        "capabilities",
        "is_personal",
        "timezone_id",
        "age",
        "end_advertiser",
        "media_agency",
        "partner",
        "is_prepay_account",
        "tax_id_status",
        "user_tasks",
    )
)
INSIGHTS_EXTRA_FIELDS = (
    "action_values",
    "cost_per_action_type",
    "unique_clicks",
    "inline_link_clicks",
    "cpp",
    "unique_ctr",
    "conversions",
    "conversion_values",
    "purchase_roas",
    "website_ctr",
    "outbound_clicks",
    "quality_ranking",
    "buying_type",
    "attribution_setting",
    "optimization_goal",
    "social_spend",
    "inline_post_engagement",
    "cost_per_inline_link_click",
    "created_time",
    "updated_time",
)
INSIGHTS_ALLOWED = frozenset(w.INSIGHTS_FIELDS + INSIGHTS_EXTRA_FIELDS)
INSIGHTS_DEFAULT_FIELDS = ("impressions", "spend")
INSIGHTS_EDGE_LEVEL = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}
TIME_FIELDS = frozenset({"created_time", "updated_time", "start_time", "event_time"})
CONTROL_PREFIX = "/_simulator/"


@dataclass
class SimulatorConfig:
    seed: int = 7
    accounts: int = 3
    scale: float = 1.0
    profile: str = "clean"
    token: str = "sim-token"
    app_secret: str | None = None
    today: dt.date | None = None
    api_versions: tuple[str, ...] = ("v24.0", "v25.0", "v26.0")
    budget_window_seconds: float = 300.0
    app_budget_calls: int | None = None
    account_budget_calls: int | None = None
    fault_rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    hang_seconds: float = 30.0
    reduce_data_threshold: int | None = None
    async_polls_to_complete: int = 2
    # Additions beyond the fixed API, all with defaults.
    retry_after_seconds: int = 1
    foreign_next_base: str = "https://graph.attacker.invalid"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"unknown profile {self.profile!r}; expected one of {sorted(PROFILES)}"
            )
        for name in self.fault_rates:
            check_fault(name)
        if not self.api_versions:
            raise ValueError("api_versions must not be empty")
        for version in self.api_versions:
            if not _VERSION.fullmatch(version):
                raise ValueError(f"api version {version!r} must look like v25.0")

    def __repr__(self) -> str:
        # The token and app secret never appear in logs or exception text.
        shown = {k: v for k, v in self.__dict__.items() if k not in ("token", "app_secret")}
        return f"SimulatorConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())}, token=***)"


@dataclass
class _Stats:
    requests_total: int = 0
    batch_items: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_account: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    throttled: int = 0

    def to_dict(self) -> JsonDict:
        return {
            "requests_total": self.requests_total,
            "batch_items": self.batch_items,
            "by_path": dict(self.by_path),
            "by_status": dict(self.by_status),
            "by_account": dict(self.by_account),
            "faults_injected": dict(self.faults_injected),
            "throttled": self.throttled,
        }


@dataclass
class _Call:
    """One API call (a request or one item of a batch) once routed."""

    method: str
    version: str
    segments: list[str]
    params: dict[str, str]
    link_base: str  # scheme://host of this server, for paging URLs
    path: str  # the request path as sent, for paging URLs and fault matching
    kind: str = ""
    template: str = ""
    account_id: str | None = None
    bucket: str = MANAGEMENT
    fault: str | None = None


@dataclass
class _Answer:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    paged: bool = False


class _TransportFault(Response):
    """A 'response' that breaks the connection instead of answering properly."""

    def __init__(self, simulator: Simulator, fault: str, raw: bytes = b"") -> None:
        super().__init__()
        self._simulator = simulator
        self._fault = fault
        self._raw = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        key = tuple(client) if client else None
        transport = self._simulator._transports.get(key) if key else None
        if transport is None:
            # No socket to break (e.g. an in-process ASGI client): fail loudly instead.
            await Response(status_code=502)(scope, receive, send)
            return
        if self._fault == "tcp_reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns close into an RST: the client sees ECONNRESET.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.write(self._raw)
            transport.close()
        for _ in range(200):
            if key not in self._simulator._transports:
                break
            await asyncio.sleep(0.001)


class Simulator:
    """The simulated Graph API: state, control methods and the ASGI app."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        cfg = self.config
        self.profile = PROFILES[cfg.profile]
        self.world = w.World(seed=cfg.seed, accounts=cfg.accounts, scale=cfg.scale, today=cfg.today)
        self._today = self.world.anchor_today
        self._lock = threading.RLock()
        self._faults = FaultPlan.build(cfg.seed, self.profile, cfg.fault_rates, cfg.hang_seconds)
        self._limits = RateLimiter(
            cfg.app_budget_calls
            if cfg.app_budget_calls is not None
            else self.profile.app_budget_calls,
            cfg.account_budget_calls
            if cfg.account_budget_calls is not None
            else self.profile.account_budget_calls,
            cfg.budget_window_seconds,
        )
        self._reports = ReportStore(cfg.seed)
        self._stats = _Stats()
        self._trace_counter = 0
        self._latency_counter = 0
        self._insights_cache: OrderedDict[tuple[Any, ...], list[JsonDict]] = OrderedDict()
        self._filter_cache: OrderedDict[tuple[Any, ...], list[w.SimObject]] = OrderedDict()
        self._transports: dict[Any, asyncio.Transport] = {}
        self._proof = (
            hmac.new(cfg.app_secret.encode(), cfg.token.encode(), hashlib.sha256).hexdigest()
            if cfg.app_secret
            else None
        )
        self._base_url: str | None = None
        self.app = Starlette(
            routes=[
                Route("/_simulator/stats", self._control_stats, methods=["GET"]),
                Route("/_simulator/faults", self._control_faults, methods=["POST"]),
                Route("/_simulator/today", self._control_today, methods=["POST"]),
                Route("/_simulator/reset", self._control_reset, methods=["POST"]),
                Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE"]),
            ]
        )

    # ----------------------------------------------------------------- control

    @property
    def base_url(self) -> str:
        """``http://host:port`` while serving; Graph paths go below it (``/v25.0/...``)."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not serving: use run_simulator() or serve()")
        return self._base_url

    @property
    def today(self) -> dt.date:
        return self._today

    def stats(self) -> JsonDict:
        with self._lock:
            return self._stats.to_dict()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _Stats()

    def inject(self, fault: str, times: int = 1, path_contains: str | None = None) -> None:
        """Serve ``fault`` to the next ``times`` requests whose path contains ``path_contains``."""
        with self._lock:
            self._faults.inject(fault, times, path_contains)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_today(self, today: dt.date) -> None:
        with self._lock:
            self._today = today
            self._insights_cache.clear()

    def reset_budgets(self) -> None:
        with self._lock:
            self._limits.reset()

    def reset(self) -> None:
        """Stats, budgets and pending injected faults back to zero."""
        with self._lock:
            self._stats = _Stats()
            self._limits.reset()
            self._faults.clear()

    async def _control_stats(self, request: Request) -> Response:
        return _json_response(self.stats())

    async def _control_faults(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body() or b"{}")
            self.inject(
                str(payload["fault"]),
                int(payload.get("times", 1)),
                payload.get("path_contains"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"error": str(exc)}, status=400)
        return _json_response({"ok": True})

    async def _control_today(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body() or b"{}")
            self.set_today(dt.date.fromisoformat(str(payload["today"])))
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"error": str(exc)}, status=400)
        return _json_response({"ok": True, "today": self._today.isoformat()})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return _json_response({"ok": True})

    # ---------------------------------------------------------------- requests

    def _trace_id(self) -> str:
        self._trace_counter += 1
        raw = w.stable_hash(self.config.seed, "trace", self._trace_counter).to_bytes(8, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    async def _handle(self, request: Request) -> Response:
        method = request.method
        params = dict(request.query_params)
        if method == "POST":
            body = (await request.body()).decode("utf-8", errors="replace")
            if body and "json" in request.headers.get("content-type", ""):
                with suppress(ValueError, AttributeError):
                    params.update({k: _as_param(v) for k, v in json.loads(body).items()})
            elif body:
                params.update(dict(parse_qsl(body, keep_blank_values=True)))
        authorization = request.headers.get("authorization", "")
        if "access_token" not in params and authorization[:7].lower() == "bearer ":
            params["access_token"] = authorization[7:].strip()
        elif "access_token" not in params and authorization[:6].lower() == "oauth ":
            params["access_token"] = authorization[6:].strip()
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        path = request.url.path
        with self._lock:
            trace_id = self._trace_id()
            self._stats.requests_total += 1
            try:
                call = self._route(method, path, params, f"{request.url.scheme}://{host}")
            except GraphError as error:
                self._stats.by_path["(unknown)"] += 1
                return self._error_response(error, trace_id, None, None, False)
            self._stats.by_path[call.template] += 1
            if call.account_id:
                self._stats.by_account[call.account_id] += 1
            try:
                self._authenticate(call.params)
            except GraphError as error:
                return self._error_response(error, trace_id, call, None, False)
            fault = self._faults.choose(path, self._applicable_faults(call))
            if fault is not None:
                self._stats.faults_injected[fault] += 1
            latency = self._latency_seconds()
        if latency:
            await asyncio.sleep(latency)
        if fault == "hang":
            await asyncio.sleep(self.config.hang_seconds)
        with self._lock:
            throttle = None
            if call.kind != "batch":
                throttle = self._limits.spend(_bare(call.account_id), call.bucket)
            if throttle is not None:
                self._stats.throttled += 1
                return self._error_response(self._throttle_error(call, throttle), trace_id, call)
            if fault in ERROR_FAULTS:
                parameter = next((k for k in ("fields", "limit", "level") if k in params), "id")
                injected = fault_error(
                    str(fault),
                    retry_after_seconds=self.config.retry_after_seconds,
                    parameter=parameter,
                )
                return self._error_response(injected, trace_id, call, fault)
            if fault == "tcp_reset":
                self._stats.by_status["reset"] += 1
                return _TransportFault(self, "tcp_reset")
            call.fault = fault
            try:
                answer = self._dispatch(call)
            except GraphError as error:
                return self._error_response(error, trace_id, call)
            if fault in PAGING_FAULTS and answer.paged:
                self._alter_page(call, answer, str(fault))
            headers = self._headers(call, trace_id)
            headers.update(answer.headers)
            payload = _dumps(answer.body)
            if fault == "html_200":
                headers["content-type"] = "text/html; charset=utf-8"
                payload = (
                    b"<!DOCTYPE html><html><head><title>Facebook | Error</title></head>"
                    b"<body><h1>Sorry, something went wrong.</h1>"
                    b"<p>We're working on it and we'll get it fixed as soon as we can.</p>"
                    b"</body></html>"
                )
            elif fault == "invalid_json_200":
                payload = payload[: max(1, len(payload) // 2)]
            self._stats.by_status[str(answer.status)] += 1
            if fault == "truncated_body":
                head = [f"HTTP/1.1 {answer.status} OK"]
                head += [f"{k}: {v}" for k, v in headers.items() if k != "content-length"]
                head.append(f"content-length: {len(payload)}")
                raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload[: len(payload) // 2]
                return _TransportFault(self, "truncated_body", raw)
            return Response(payload, status_code=answer.status, headers=headers)

    def _latency_seconds(self) -> float:
        base = self.config.latency_ms + self.profile.latency_ms
        jitter = self.profile.latency_jitter_ms
        if jitter:
            self._latency_counter += 1
            roll = w.stable_hash(self.config.seed, "latency", self._latency_counter) % 1000
            base += jitter * roll / 1000
        return base / 1000.0

    def _applicable_faults(self, call: _Call) -> frozenset[str]:
        names = set(ERROR_FAULTS) | set(TRANSPORT_FAULTS)
        if "after" not in call.params:
            names.discard("expired_cursor")
        if call.kind in ("me_adaccounts", "edge", "insights", "report_insights", "object_insights"):
            names |= set(PAGING_FAULTS)
        if call.kind == "report_create":
            names |= set(JOB_FAULTS)
        return frozenset(names)

    def _authenticate(self, params: Mapping[str, str]) -> None:
        token = params.get("access_token")
        if not token:
            raise GraphError(
                190,
                "An active access token must be used to query information about the current user.",
            )
        if not hmac.compare_digest(token.encode(), self.config.token.encode()):
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        if self._proof is not None:
            proof = params.get("appsecret_proof", "")
            if not proof:
                raise GraphError(
                    100,
                    "appsecret_proof argument must be passed as a parameter when making this call",
                    error_type="GraphMethodException",
                )
            if not hmac.compare_digest(proof.encode(), self._proof.encode()):
                raise GraphError(
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    error_type="GraphMethodException",
                )

    def _throttle_error(self, call: _Call, throttle: Throttle) -> GraphError:
        insights = throttle.bucket == INSIGHTS
        if throttle.scope == "app":
            return GraphError(
                4,
                "(#4) Application request limit reached",
                subcode=1504039 if insights else 1504022,
                is_transient=True,
            )
        if insights:
            return fault_error("code_80000", retry_after_seconds=1, parameter="")
        if call.kind == "edge":
            return fault_error("code_80004", retry_after_seconds=1, parameter="")
        if call.kind in ("account", "edge_activities"):
            return fault_error("code_613", retry_after_seconds=1, parameter="")
        return fault_error("code_17", retry_after_seconds=1, parameter="")

    def _headers(
        self, call: _Call | None, trace_id: str, fault: str | None = None
    ) -> dict[str, str]:
        headers = {
            "content-type": CONTENT_TYPE,
            "x-fb-trace-id": trace_id,
            "x-fb-rev": FB_REV,
            "facebook-api-version": call.version if call else self.config.api_versions[-1],
            "cache-control": "private, no-cache, no-store, must-revalidate",
            "pragma": "no-cache",
            "access-control-allow-origin": "*",
        }
        account = _bare(call.account_id) if call else None
        headers.update(self._limits.headers(account, call is not None and call.bucket == INSIGHTS))
        if fault in THROTTLE_FAULTS and account is not None:
            # An injected throttle looks like the real thing: over 100 % and a regain time.
            bucket = INSIGHTS if call and call.bucket == INSIGHTS else MANAGEMENT
            headers["x-business-use-case-usage"] = _dumps(
                {account: [business_use_case_entry(bucket, 104.0, 60.0)]}
            ).decode()
        return headers

    def _error_response(
        self,
        error: GraphError,
        trace_id: str,
        call: _Call | None,
        fault: str | None = None,
        count_status: bool = True,
    ) -> Response:
        headers = self._headers(call, trace_id, fault)
        headers.update(error.headers)
        headers["www-authenticate"] = (
            f'OAuth "Facebook Platform" "{_www_kind(error)}" "{error.message}"'
        )
        self._stats.by_status[str(error.http_status)] += 1
        return Response(
            _dumps(error.body(trace_id)), status_code=error.http_status, headers=headers
        )

    # ----------------------------------------------------------------- routing

    def _route(self, method: str, path: str, params: dict[str, str], link_base: str) -> _Call:
        segments = [s for s in path.split("/") if s]
        versions = self.config.api_versions
        if segments and _VERSION.fullmatch(segments[0]):
            version = segments.pop(0)
            if version not in versions:
                if _major(version) < _major(versions[0]):
                    raise GraphError(
                        2635,
                        f"(#2635) You are calling a deprecated version of the Ads API. Please "
                        f"update to the latest version: {versions[-1]}.",
                    )
                raise GraphError(100, f"Unknown path components: /{version}")
        else:
            version = versions[0]  # unversioned calls get the app's oldest version, as at Meta
        call = _Call(method, version, segments, params, link_base, path)
        n = len(segments)
        head = segments[0] if segments else ""
        if n == 0:
            if method == "POST" and "batch" in params:
                call.kind, call.template = "batch", "/{version}/"
            elif "ids" in params:
                call.kind, call.template = "ids", "/{version}/?ids"
            else:
                raise invalid_parameter("(#100) Missing or invalid parameter: ids")
            return call
        if head == "me":
            if n == 1:
                call.kind, call.template = "me", "/{version}/me"
            elif n == 2 and segments[1] == "adaccounts":
                call.kind, call.template = "me_adaccounts", "/{version}/me/adaccounts"
            else:
                raise GraphError(100, f"(#100) Unknown path components: /{'/'.join(segments[1:])}")
            return call
        if head.startswith("act_"):
            if not _DIGITS.fullmatch(head[4:]) or not self.world.has_account(head):
                raise unknown_object(head)
            call.account_id = head
            if n == 1:
                call.kind, call.template = "account", "/{version}/act_{id}"
                return call
            edge = segments[1]
            call.template = f"/{{version}}/act_{{id}}/{edge}"
            if n == 2 and edge == "insights":
                call.kind = "report_create" if method == "POST" else "insights"
                call.bucket = INSIGHTS
                return call
            if n == 2 and edge in w.OBJECT_KINDS:
                call.kind = "edge_activities" if edge == "activities" else "edge"
                return call
            raise GraphError(100, f"(#100) Unknown path components: /{'/'.join(segments[1:])}")
        if _DIGITS.fullmatch(head):
            run = self._reports.get(head)
            if run is not None:
                call.account_id = run.account.id
                call.bucket = INSIGHTS
                if n == 1:
                    call.kind, call.template = "report", "/{version}/{report_run_id}"
                    return call
                if n == 2 and segments[1] == "insights":
                    call.kind = "report_insights"
                    call.template = "/{version}/{report_run_id}/insights"
                    return call
            obj = self.world.find_object(head)
            if obj is not None:
                call.account_id = obj.account.id
                if n == 1:
                    call.kind, call.template = "object", "/{version}/{object_id}"
                    return call
                if n == 2 and segments[1] == "insights" and obj.kind in INSIGHTS_EDGE_LEVEL:
                    call.kind, call.bucket = "object_insights", INSIGHTS
                    call.template = "/{version}/{object_id}/insights"
                    return call
                raise GraphError(100, f"(#100) Unknown path components: /{'/'.join(segments[1:])}")
        raise unknown_object(head)

    def _dispatch(self, call: _Call) -> _Answer:
        kind = call.kind
        if kind == "batch":
            return self._batch(call)
        if kind == "ids":
            return self._ids(call)
        if kind == "me":
            fields = self._fields(call, frozenset({"id", "name"}), ("id", "name"), "User")
            return _Answer(_project({"id": "100000000000001", "name": "Simulator User"}, fields))
        if kind == "me_adaccounts":
            fields = self._fields(call, ACCOUNT_FIELDS, ("account_id", "id"), "AdAccount")
            accounts = [a.fields() for a in self.world.accounts]
            items = [_project(a, fields) for a in accounts]
            return self._paged(call, items, self._limit(call), True)
        if kind == "account":
            account = self.world.account(call.account_id or "")
            fields = self._fields(call, ACCOUNT_FIELDS, ("id", "account_id"), "AdAccount")
            return _Answer(_project(account.fields(), fields))
        if kind in ("edge", "edge_activities"):
            return self._edge(call)
        if kind == "insights":
            return self._insights_page(call)
        if kind == "object_insights":
            return self._insights_page(call)
        if kind == "report_create":
            return self._report_create(call)
        if kind == "report":
            run = self._reports.get(call.segments[0])
            assert run is not None
            run.poll()
            return _Answer(run.describe(call.version))
        if kind == "report_insights":
            run = self._reports.get(call.segments[0])
            assert run is not None
            if run.status != COMPLETED:
                raise GraphError(
                    100,
                    f"(#100) The report run {run.id} is not ready: async_status is '{run.status}'",
                )
            limit = self._limit(call)
            return self._paged(call, run.rows, limit, False)
        if kind == "object":
            obj = self.world.find_object(call.segments[0])
            assert obj is not None
            fields = self._fields(call, OBJECT_FIELDS[obj.kind], ("id",), w.NODE_TYPE[obj.kind])
            return _Answer(_project(_expand(obj), fields))
        raise GraphError(100, "(#100) Unsupported request")

    # --------------------------------------------------------------- helpers

    def _fields(
        self, call: _Call, allowed: frozenset[str], default: Sequence[str], node_type: str
    ) -> tuple[str, ...]:
        raw = call.params.get("fields")
        if raw is None or raw == "":
            return tuple(default)
        names = _parse_list(raw, "fields")
        for name in names:
            if name not in allowed:
                raise unknown_field(name, node_type)
        return tuple(names)

    def _limit(self, call: _Call) -> int:
        raw = call.params.get("limit")
        if raw is None or raw == "":
            limit = DEFAULT_LIMIT
        else:
            try:
                limit = int(raw)
            except ValueError:
                raise invalid_parameter(
                    f"(#100) Param limit must be a non-negative integer, got {raw!r}"
                ) from None
            if limit < 1:
                raise invalid_parameter("(#100) Param limit must be a positive integer")
        threshold = self.config.reduce_data_threshold
        if threshold is not None and limit > threshold:
            raise fault_error("reduce_data", retry_after_seconds=1, parameter="limit")
        return min(limit, MAX_LIMIT)

    def _cursor(self, position: int) -> str:
        shifted = position + 1
        sig = w.stable_hash(self.config.seed, "cursor", shifted) & 0xFFFFFF
        raw = f"AQH{sig:06x}{shifted:x}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_cursor(self, cursor: str, name: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            if not raw.startswith("AQH"):
                raise ValueError(cursor)
            sig, shifted = int(raw[3:9], 16), int(raw[9:], 16)
        except (ValueError, UnicodeDecodeError):
            raise invalid_parameter(
                "(#100) Invalid parameter", user_msg=f"The '{name}' cursor is not valid."
            ) from None
        if sig != w.stable_hash(self.config.seed, "cursor", shifted) & 0xFFFFFF:
            raise invalid_parameter(
                "(#100) Invalid parameter", user_msg=f"The '{name}' cursor is not valid."
            )
        return shifted - 1

    def _link(self, call: _Call, **changes: str | None) -> str:
        params = dict(call.params)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return f"{call.link_base}{call.path}?{urlencode(params)}"

    def _paged(
        self,
        call: _Call,
        items: Sequence[Any],
        limit: int,
        with_summary: bool,
        render: Callable[[Any], JsonDict] | None = None,
    ) -> _Answer:
        """One page of ``items`` by cursor; only the page's items are rendered."""
        total = len(items)
        if "after" in call.params:
            start = self._decode_cursor(call.params["after"], "after") + 1
            stop = min(total, start + limit)
        elif "before" in call.params:
            stop = min(total, self._decode_cursor(call.params["before"], "before"))
            start = max(0, stop - limit)
        else:
            start, stop = 0, min(total, limit)
        start = max(0, min(start, total))
        stop = max(start, stop)
        data = [render(i) for i in items[start:stop]] if render else list(items[start:stop])
        if data:
            cursors = {"before": self._cursor(start), "after": self._cursor(stop - 1)}
        else:
            cursors = {"before": self._cursor(start - 1), "after": self._cursor(start - 1)}
        paging: JsonDict = {"cursors": cursors}
        if start > 0:
            paging["previous"] = self._link(call, after=None, before=cursors["before"])
        if stop < total:
            paging["next"] = self._link(call, before=None, after=cursors["after"])
        body: JsonDict = {"data": data, "paging": paging}
        if (
            with_summary and call.params.get("summary", "").lower() in ("true", "1", "total_count")
        ) or (with_summary and "total_count" in call.params.get("summary", "")):
            body["summary"] = {"total_count": total}
        return _Answer(body, paged=True)

    def _alter_page(self, call: _Call, answer: _Answer, fault: str) -> None:
        body = answer.body
        paging = body.setdefault("paging", {})
        if fault == "empty_page_with_next":
            # Nothing this time, but the next URL resumes exactly where this page began.
            first = (
                self._decode_cursor(call.params["after"], "after") if "after" in call.params else -1
            )
            after = self._cursor(first)
            body["data"] = []
            paging["cursors"] = {"before": after, "after": after}
            paging["next"] = self._link(call, before=None, after=after)
        elif fault == "foreign_next":
            after = paging.get("cursors", {}).get("after") or self._cursor(-1)
            local = self._link(call, before=None, after=after)
            paging["next"] = self.config.foreign_next_base + local[len(call.link_base) :]

    # ------------------------------------------------------------------ edges

    def _edge(self, call: _Call) -> _Answer:
        kind = call.segments[1]
        account = call.account_id or ""
        objects = self.world.data(account).by_kind[kind]
        default = ("id",) if kind != "activities" else tuple(sorted(OBJECT_FIELDS["activities"]))
        fields = self._fields(call, OBJECT_FIELDS[kind], default, w.NODE_TYPE[kind])
        limit = self._limit(call)
        params = call.params
        key = tuple(params.get(k) for k in ("effective_status", "filtering", "since", "until"))
        cache_key = (account, kind, *key)
        selected = self._filter_cache.get(cache_key)
        if selected is None:
            selected = self._filter_objects(call, kind, objects)
            self._filter_cache[cache_key] = selected
            if len(self._filter_cache) > 64:
                self._filter_cache.popitem(last=False)
        with_id = kind != "activities"
        nested = "campaign" in fields or "adset" in fields

        def render(obj: w.SimObject) -> JsonDict:
            return _project(_expand(obj) if nested else obj.fields, fields, with_id=with_id)

        return self._paged(call, selected, limit, with_id, render)

    def _filter_objects(
        self, call: _Call, kind: str, objects: Sequence[w.SimObject]
    ) -> list[w.SimObject]:
        params = call.params
        level = INSIGHTS_EDGE_LEVEL.get(kind, "")
        status_filter_given = False
        predicates: list[Callable[[w.SimObject], bool]] = []
        if "effective_status" in params and kind in INSIGHTS_EDGE_LEVEL:
            wanted = set(_parse_list(params["effective_status"], "effective_status"))
            status_filter_given = True
            predicates.append(lambda o: o.fields.get("effective_status") in wanted)
        if "filtering" in params:
            for rule in _parse_filtering(params["filtering"]):
                name = rule["field"]
                for prefix in (f"{level}.", "ad.", "adset.", "campaign."):
                    if level and name.startswith(prefix):
                        bare = name[len(prefix) :]
                        name = bare if prefix == f"{level}." else f"{prefix[:-1]}_{bare}"
                        break
                if name == "effective_status":
                    status_filter_given = True
                if name not in OBJECT_FIELDS[kind] and name != "id":
                    raise invalid_parameter(f"(#100) Filtering field '{rule['field']}' is invalid")
                predicates.append(_predicate(name, rule["operator"], rule.get("value")))
        if kind == "activities":
            since = _unix_param(params, "since")
            until = _unix_param(params, "until")
            if since is not None:
                predicates.append(lambda o: o.created_unix >= since)
            if until is not None:
                predicates.append(lambda o: o.created_unix <= until)
        if kind in INSIGHTS_EDGE_LEVEL and not status_filter_given:
            predicates.append(lambda o: o.fields["effective_status"] not in w.HIDDEN_BY_DEFAULT)
        return [o for o in objects if all(p(o) for p in predicates)]

    def _ids(self, call: _Call) -> _Answer:
        ids = _parse_list(call.params["ids"], "ids")
        result: JsonDict = {}
        for object_id in ids:
            if object_id.startswith("act_") and self.world.has_account(object_id):
                fields = self._fields(call, ACCOUNT_FIELDS, ("id", "account_id"), "AdAccount")
                result[object_id] = _project(self.world.account(object_id).fields(), fields)
                continue
            obj = self.world.find_object(object_id) if _DIGITS.fullmatch(object_id) else None
            if obj is None:
                raise GraphError(
                    100,
                    f"(#100) Some of the aliases you requested do not exist: {object_id}",
                )
            fields = self._fields(call, OBJECT_FIELDS[obj.kind], ("id",), w.NODE_TYPE[obj.kind])
            result[object_id] = _project(_expand(obj), fields)
            if call.account_id is None:
                call.account_id = obj.account.id
        return _Answer(result)

    # --------------------------------------------------------------- insights

    def _insights_query(self, call: _Call) -> tuple[Any, ...]:
        """Validate the insights parameters; return the normalised query."""
        params = call.params
        today = self._today
        if call.kind == "object_insights":
            obj = self.world.find_object(call.segments[0])
            assert obj is not None
            node_level = INSIGHTS_EDGE_LEVEL[obj.kind]
            account_id = obj.account.id
        else:
            obj = None
            node_level = "account"
            account_id = call.account_id or ""
        level = params.get("level") or node_level
        if level not in w.LEVELS:
            raise invalid_parameter(
                f"(#100) level must be one of the following values: {', '.join(w.LEVELS)}"
            )
        breakdowns = tuple(_parse_list(params.get("breakdowns") or "[]", "breakdowns"))
        for i, dim in enumerate(breakdowns):
            if dim not in w.BREAKDOWN_VALUES:
                raise invalid_parameter(
                    f"(#100) breakdowns[{i}] must be one of the following values: "
                    f"{', '.join(w.BREAKDOWN_VALUES)}"
                )
        since, until = self._time_range(params, today)
        if since > until:
            raise invalid_parameter("(#100) time_range: since must be on or before until")
        if until > today:
            raise invalid_parameter(
                f"(#100) time_range: until ({until.isoformat()}) cannot be in the future "
                f"(today is {today.isoformat()} in the ad account's time zone)"
            )
        if since < w.months_before(today, w.MAX_HISTORY_MONTHS):
            raise GraphError(
                3018,
                "(#3018) The start date of the time range cannot be beyond 37 months from the "
                "current date",
                user_title="Start date beyond 37 months",
            )
        increment = str(params.get("time_increment") or "all_days")
        if increment not in ("all_days", "monthly"):
            if not increment.isdigit() or not 1 <= int(increment) <= 90:
                raise invalid_parameter(
                    "(#100) time_increment must be an integer from 1 to 90, 'monthly' or 'all_days'"
                )
            increment = str(int(increment))
        fields_raw = params.get("fields")
        fields = tuple(_parse_list(fields_raw, "fields")) if fields_raw else INSIGHTS_DEFAULT_FIELDS
        for name in fields:
            if name not in INSIGHTS_ALLOWED:
                raise invalid_parameter(
                    f"(#100) {name} is not valid for fields param. please check "
                    "https://developers.facebook.com/docs/marketing-api/reference/ads-insights/ "
                    "for all valid values"
                )
        windows_raw = params.get("action_attribution_windows")
        windows = (
            tuple(_parse_list(windows_raw, "action_attribution_windows")) if windows_raw else ()
        )
        ad_filter = self._insights_ad_filter(params.get("filtering"), obj)
        return (account_id, since, until, level, breakdowns, increment, fields, windows, ad_filter)

    def _time_range(self, params: Mapping[str, str], today: dt.date) -> tuple[dt.date, dt.date]:
        if params.get("time_range"):
            try:
                time_range = json.loads(params["time_range"])
                since = _parse_date(str(time_range["since"]))
                until = _parse_date(str(time_range["until"]))
            except (ValueError, KeyError, TypeError):
                raise invalid_parameter(
                    "(#100) time_range must be an object with 'since' and 'until' as YYYY-MM-DD"
                ) from None
            return since, until
        preset = params.get("date_preset") or "last_30d"
        one = dt.timedelta(days=1)
        if preset == "today":
            return today, today
        if preset == "yesterday":
            return today - one, today - one
        if preset == "this_month":
            return today.replace(day=1), today
        if preset == "last_month":
            last = today.replace(day=1) - one
            return last.replace(day=1), last
        if preset == "maximum":
            return w.months_before(today, w.MAX_HISTORY_MONTHS), today
        match = re.fullmatch(r"last_([0-9]+)d", preset)
        if match:
            return today - dt.timedelta(days=int(match.group(1))), today - one
        raise invalid_parameter(f"(#100) date_preset {preset!r} is not supported")

    def _insights_ad_filter(self, raw: str | None, obj: w.SimObject | None) -> tuple[Any, ...]:
        rules: list[tuple[str, str, Any]] = []
        if obj is not None:
            rules.append((f"{INSIGHTS_EDGE_LEVEL[obj.kind]}.id", "EQUAL", obj.id))
        for rule in _parse_filtering(raw) if raw else []:
            name = rule["field"]
            level, _, attr = name.partition(".")
            if level not in ("ad", "adset", "campaign") or attr not in ("id", "effective_status"):
                raise invalid_parameter(
                    f"(#100) Filtering field '{name}' is invalid for insights: use "
                    "ad.id, adset.id, campaign.id or <level>.effective_status"
                )
            value = rule.get("value")
            rules.append((name, rule["operator"], _freeze(value)))
        return tuple(rules)

    def _insights_rows(self, query: tuple[Any, ...]) -> list[JsonDict]:
        key = (*query, self._today)
        cached = self._insights_cache.get(key)
        if cached is not None:
            self._insights_cache.move_to_end(key)
            return cached
        account_id, since, until, level, breakdowns, increment, fields, windows, ad_filter = query
        data = self.world.data(account_id)
        ads = data.by_kind["ads"]
        if ad_filter:
            predicates = [
                _insights_predicate(data, name, op, value) for name, op, value in ad_filter
            ]
            ads = [ad for ad in ads if all(p(ad) for p in predicates)]
        keep = set(fields) | {"date_start", "date_stop"}
        rows = []
        for start, stop, owner, values, vector in self.world.aggregate(
            account_id, since, until, level, breakdowns, self._today, increment, ads
        ):
            row = self.world.insight_row(level, owner, start, stop, breakdowns, values, vector)
            projected = {k: v for k, v in row.items() if k in keep or k in breakdowns}
            if windows and "actions" in projected:
                wanted = {"action_type", "value", *windows}
                projected["actions"] = [
                    {k: v for k, v in a.items() if k in wanted} for a in projected["actions"]
                ]
            rows.append(projected)
        self._insights_cache[key] = rows
        if len(self._insights_cache) > 32:
            self._insights_cache.popitem(last=False)
        return rows

    def _insights_page(self, call: _Call) -> _Answer:
        query = self._insights_query(call)
        limit = self._limit(call)
        return self._paged(call, self._insights_rows(query), limit, False)

    def _report_create(self, call: _Call) -> _Answer:
        query = self._insights_query(call)
        rows = self._insights_rows(query)
        job_fault = call.fault if call.fault in JOB_FAULTS else None
        account = self.world.account(query[0])
        run = self._reports.create(
            account, query[1], query[2], rows, job_fault, self.config.async_polls_to_complete
        )
        return _Answer({"report_run_id": run.id})

    # ------------------------------------------------------------------ batch

    def _batch(self, call: _Call) -> _Answer:
        try:
            items = json.loads(call.params["batch"])
        except ValueError:
            raise invalid_parameter("(#100) The parameter batch must be a JSON array") from None
        if not isinstance(items, list):
            raise invalid_parameter("(#100) The parameter batch must be a JSON array")
        if len(items) > MAX_BATCH:
            raise invalid_parameter(
                f"(#100) Too many requests in batch message. Maximum batch size is {MAX_BATCH}"
            )
        answers: list[JsonDict | None] = []
        for item in items:
            self._stats.batch_items += 1
            answers.append(self._batch_item(call, item))
        return _Answer(answers)

    def _batch_item(self, outer: _Call, item: Any) -> JsonDict:
        trace_id = self._trace_id()
        inner: _Call | None = None
        try:
            if not isinstance(item, dict) or "relative_url" not in item:
                raise invalid_parameter("(#100) Each batch item needs a relative_url")
            method = str(item.get("method", "GET")).upper()
            relative = str(item["relative_url"]).lstrip("/")
            path_part, _, query = relative.partition("?")
            params = dict(parse_qsl(query, keep_blank_values=True))
            if item.get("body"):
                params.update(parse_qsl(str(item["body"]), keep_blank_values=True))
            for secret in ("access_token", "appsecret_proof"):
                if secret not in params and secret in outer.params:
                    params[secret] = outer.params[secret]
            path = "/" + path_part
            if not _VERSION.match(path_part):
                path = f"/{outer.version}/{path_part}"
            inner = self._route(method, path, params, outer.link_base)
            if inner.kind == "batch":
                raise invalid_parameter("(#100) Batch requests cannot be nested")
            if inner.account_id:
                self._stats.by_account[inner.account_id] += 1
            self._authenticate(params)
            throttle = self._limits.spend(_bare(inner.account_id), inner.bucket)
            if throttle is not None:
                self._stats.throttled += 1
                raise self._throttle_error(inner, throttle)
            answer = self._dispatch(inner)
            status, body = answer.status, answer.body
        except GraphError as error:
            status, body = error.http_status, error.body(trace_id)
        headers = self._headers(inner, trace_id)
        return {
            "code": status,
            "headers": [{"name": k, "value": v} for k, v in headers.items()],
            "body": _dumps(body).decode(),
        }

    # ---------------------------------------------------------------- serving

    def _protocol_class(self) -> type[asyncio.Protocol]:
        """uvicorn's HTTP protocol, remembering each connection's transport (for resets)."""
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
        except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
            from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
        transports = self._transports

        class TrackedProtocol(Base):
            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                if self.client:
                    transports[tuple(self.client)] = transport

            def connection_lost(self, exc: Exception | None) -> None:
                if self.client:
                    transports.pop(tuple(self.client), None)
                super().connection_lost(exc)

        return TrackedProtocol

    def _uvicorn_config(self) -> uvicorn.Config:
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:  # pragma: no cover
            loop = "asyncio"
        return uvicorn.Config(
            self.app,
            http=self._protocol_class(),
            loop=loop,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[Simulator]:
        """Serve in a background thread for the duration of the block."""
        sock = _bind(host, port)
        server = uvicorn.Server(self._uvicorn_config())
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="meta-simulator", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the Graph API simulator did not start")
            time.sleep(0.005)
        self._base_url = _base_url(sock)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=5)
            sock.close()
            self._base_url = None

    def serve_forever(
        self, host: str, port: int, on_ready: Callable[[Simulator], None] | None = None
    ) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C)."""
        sock = _bind(host, port)
        self._base_url = _base_url(sock)
        server = uvicorn.Server(self._uvicorn_config())
        if on_ready is not None:
            on_ready(self)
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()


@contextmanager
def run_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Simulator]:
    """Start a simulator on a real socket (port 0: a free one) for the block's duration."""
    simulator = Simulator(config)
    with simulator.serve(host, port) as running:
        yield running


# -------------------------------------------------------------------- helpers


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(_dumps(value), status_code=status, media_type="application/json")


def _as_param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _bare(account_id: str | None) -> str | None:
    return account_id[4:] if account_id and account_id.startswith("act_") else account_id


def _major(version: str) -> int:
    return int(version[1:].split(".")[0])


def _www_kind(error: GraphError) -> str:
    return "invalid_token" if error.code == 190 else "invalid_request"


def _parse_list(raw: str, name: str) -> list[str]:
    """A list parameter: JSON list (as the SDK sends) or comma list (nested braces kept out)."""
    raw = raw.strip()
    items: list[str] = []
    if raw.startswith("["):
        try:
            value = json.loads(raw)
        except ValueError:
            raise invalid_parameter(
                f"(#100) Param {name} must be a JSON array or a comma list"
            ) from None
        if not isinstance(value, list):
            raise invalid_parameter(f"(#100) Param {name} must be a list")
        items = [str(v) for v in value]
    else:
        current: list[str] = []
        depth = 0
        for char in raw:
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            if char == "," and depth == 0:
                items.append("".join(current))
                current = []
            else:
                current.append(char)
        items.append("".join(current))
    # "creative{id,name}" asks for the creative: the sub-selection is ignored.
    return [item.split("{", 1)[0].strip() for item in items if item.strip()]


def _parse_filtering(raw: str) -> list[JsonDict]:
    try:
        rules = json.loads(raw)
    except ValueError:
        raise invalid_parameter("(#100) Param filtering must be a JSON array") from None
    if not isinstance(rules, list):
        raise invalid_parameter("(#100) Param filtering must be a JSON array")
    for rule in rules:
        if not isinstance(rule, dict) or "field" not in rule or "operator" not in rule:
            raise invalid_parameter(
                "(#100) Each filtering rule needs 'field', 'operator' and 'value'"
            )
        if rule["operator"] not in _OPERATORS:
            raise invalid_parameter(
                f"(#100) Filtering operator '{rule['operator']}' is invalid; expected one of "
                f"{', '.join(sorted(_OPERATORS))}"
            )
    return rules


def _compare_value(name: str, value: Any) -> Any:
    if name in TIME_FIELDS:
        try:
            return int(float(value))
        except (TypeError, ValueError):
            raise invalid_parameter(
                f"(#100) Filtering on {name} needs a unix timestamp, got {value!r}"
            ) from None
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def _object_value(obj: w.SimObject, name: str) -> Any:
    if name in ("created_time", "start_time", "event_time"):
        return obj.created_unix
    if name == "updated_time":
        return obj.updated_unix
    if name == "campaign_id":
        return obj.campaign_id or obj.fields.get("campaign_id", "")
    if name == "adset_id":
        return obj.adset_id or ""
    value = obj.fields.get(name, "")
    return value if isinstance(value, str) else json.dumps(value)


def _predicate(name: str, operator: str, value: Any) -> Callable[[w.SimObject], bool]:
    if operator in ("IN", "NOT_IN", "ANY", "ALL", "NONE", "IN_RANGE", "NOT_IN_RANGE"):
        values = value if isinstance(value, list) else [value]
        converted = [_compare_value(name, v) for v in values]
        if operator in ("IN_RANGE", "NOT_IN_RANGE"):
            if len(converted) != 2:
                raise invalid_parameter(f"(#100) {operator} on {name} needs [low, high]")
            low, high = converted
            inside = operator == "IN_RANGE"
            return lambda o: (low <= _object_value(o, name) <= high) == inside
        members = set(converted)
        negate = operator in ("NOT_IN", "NONE")
        return lambda o: (_object_value(o, name) in members) != negate
    target = _compare_value(name, value)
    tests: dict[str, Callable[[Any], bool]] = {
        "EQUAL": lambda v: v == target,
        "NOT_EQUAL": lambda v: v != target,
        "GREATER_THAN": lambda v: v > target,
        "GREATER_THAN_OR_EQUAL": lambda v: v >= target,
        "LESS_THAN": lambda v: v < target,
        "LESS_THAN_OR_EQUAL": lambda v: v <= target,
        "CONTAIN": lambda v: str(target) in str(v),
        "NOT_CONTAIN": lambda v: str(target) not in str(v),
    }
    test = tests[operator]
    return lambda o: test(_object_value(o, name))


_OPERATORS = frozenset(
    (
        "EQUAL",
        "NOT_EQUAL",
        "GREATER_THAN",
        "GREATER_THAN_OR_EQUAL",
        "LESS_THAN",
        "LESS_THAN_OR_EQUAL",
        "IN_RANGE",
        "NOT_IN_RANGE",
        "CONTAIN",
        "NOT_CONTAIN",
        "IN",
        "NOT_IN",
        "ANY",
        "ALL",
        "NONE",
    )
)


def _insights_predicate(
    data: w.AccountData, name: str, operator: str, value: Any
) -> Callable[[w.SimObject], bool]:
    level, _, attr = name.partition(".")

    def subject(ad: w.SimObject) -> w.SimObject:
        if level == "campaign":
            return data.by_id[ad.campaign_id or ""]
        if level == "adset":
            return data.by_id[ad.adset_id or ""]
        return ad

    inner = _predicate(attr, operator, _thaw(value))
    return lambda ad: inner(subject(ad))


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _thaw(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _unix_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(float(raw))
    except ValueError:
        raise invalid_parameter(f"(#100) Param {name} must be a unix timestamp") from None


def _parse_date(raw: str) -> dt.date:
    if not _DATE.fullmatch(raw):
        raise ValueError(raw)
    return dt.date.fromisoformat(raw)


def _expand(obj: w.SimObject) -> JsonDict:
    """The object's fields plus the nested references some clients select."""
    if obj.kind == "ads":
        return {
            **obj.fields,
            "campaign": {"id": obj.campaign_id},
            "adset": {"id": obj.adset_id},
        }
    if obj.kind == "adsets":
        return {**obj.fields, "campaign": {"id": obj.campaign_id}}
    return obj.fields


def _project(source: Mapping[str, Any], fields: Sequence[str], with_id: bool = True) -> JsonDict:
    result: JsonDict = {}
    for name in fields:
        if name in source:
            result[name] = source[name]
    if with_id and "id" in source and "id" not in result:
        result["id"] = source["id"]
    return result


__all__ = ["FAULTS", "Simulator", "SimulatorConfig", "run_simulator"]
