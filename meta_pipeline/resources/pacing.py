"""Pacing from Meta's usage headers: slow down smoothly before the limit.

Every response carries (some of) ``X-App-Usage``, ``X-Ad-Account-Usage``,
``X-Business-Use-Case-Usage`` and ``X-FB-Ads-Insights-Throttle``: percentages of
a quota that decays over a window. Below ``threshold_pct`` we do not wait.
Above it the wait before the next call grows with usage, sized so that at the
midpoint between the threshold and 100 % we call exactly as fast as the quota
decays (the per-call cost is learned from the headers), and slower above it.
Meta's counters are global, so concurrent runs pacing on them pace each other.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

APP_SCOPE = "app"


@dataclass
class _Reading:
    pct: float
    observed_at: float
    drain_pct_per_second: float
    regain_seconds: float = 0.0
    per_call_pct: float | None = None


@dataclass(frozen=True)
class UsageReading:
    """One usage figure from one header, for one scope (the app or an account)."""

    scope: str
    pct: float
    seconds_to_reset: float | None = None  # X-Ad-Account-Usage reset_time_duration
    regain_seconds: float = 0.0


def _loads(raw: str | None) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def parse_usage_headers(headers: Mapping[str, str], account_id: str | None) -> list[UsageReading]:
    """Every usage figure in a response's headers (absent or garbled headers: none)."""
    lower = {k.lower(): v for k, v in headers.items()}
    readings: list[UsageReading] = []
    app = _loads(lower.get("x-app-usage"))
    if isinstance(app, dict):
        pct = max(_num(app.get(k)) for k in ("call_count", "total_time", "total_cputime"))
        readings.append(UsageReading(APP_SCOPE, pct))
    account_scope = f"account:{account_id}" if account_id else "account:?"
    acc = _loads(lower.get("x-ad-account-usage"))
    if isinstance(acc, dict):
        window = _num(acc.get("reset_time_duration")) or None
        readings.append(UsageReading(account_scope, _num(acc.get("acc_id_util_pct")), window))
    buc = _loads(lower.get("x-business-use-case-usage"))
    if isinstance(buc, dict):
        for business_id, entries in buc.items():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                pct = max(_num(entry.get(k)) for k in ("call_count", "total_time", "total_cputime"))
                regain_minutes = _num(entry.get("estimated_time_to_regain_access"))
                scope = f"buc:{business_id}:{entry.get('type', '?')}"
                readings.append(UsageReading(scope, pct, None, regain_minutes * 60.0))
    insights = _loads(lower.get("x-fb-ads-insights-throttle"))
    if isinstance(insights, dict):
        readings.append(UsageReading("insights_app", _num(insights.get("app_id_util_pct"))))
        readings.append(
            UsageReading(f"insights_{account_scope}", _num(insights.get("acc_id_util_pct")))
        )
    return readings


def throttle_hint_seconds(headers: Mapping[str, str]) -> float:
    """The longest wait the headers of a throttled response ask for, in seconds."""
    lower = {k.lower(): v for k, v in headers.items()}
    wait = 0.0
    retry_after = lower.get("retry-after")
    if retry_after:
        wait = max(wait, _num(retry_after.strip()))
    for reading in parse_usage_headers(headers, None):
        wait = max(wait, reading.regain_seconds)
    return wait


class Pacer:
    """Remembers the latest usage per scope and says how long to wait before a call."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        threshold_pct: float = 60.0,
        window_seconds: float = 300.0,
        default_call_pct: float = 1.0,
        max_wait_seconds: float = 300.0,
    ) -> None:
        self.enabled = enabled
        self.threshold_pct = threshold_pct
        self.window_seconds = window_seconds
        self.default_call_pct = default_call_pct
        self.max_wait_seconds = max_wait_seconds
        self._readings: dict[str, _Reading] = {}
        self._lock = threading.Lock()

    def _decayed(self, reading: _Reading, now: float) -> float:
        # Meta's counters drain over time; an old reading overstates usage.
        elapsed = max(now - reading.observed_at, 0.0)
        return max(0.0, reading.pct - elapsed * reading.drain_pct_per_second)

    def _drain_rate(self, usage: UsageReading) -> float:
        """Percentage points drained per second for this reading's quota."""
        if usage.seconds_to_reset and usage.pct > 0:
            # reset_time_duration is the time for the current usage to drain to zero.
            return usage.pct / usage.seconds_to_reset
        return 100.0 / self.window_seconds

    def observe(self, headers: Mapping[str, str], account_id: str | None, now: float) -> None:
        """Record the usage headers of a response (called after every response)."""
        for usage in parse_usage_headers(headers, account_id):
            drain = self._drain_rate(usage)
            with self._lock:
                previous = self._readings.get(usage.scope)
                per_call = previous.per_call_pct if previous else None
                if previous is not None:
                    increase = usage.pct - self._decayed(previous, now)
                    if increase > 0:
                        per_call = increase if per_call is None else 0.7 * per_call + 0.3 * increase
                self._readings[usage.scope] = _Reading(
                    usage.pct, now, drain, usage.regain_seconds, per_call
                )

    def usage_pct(self, account_id: str | None, now: float) -> float:
        """Highest current usage among the scopes that apply to ``account_id``."""
        with self._lock:
            readings = [r for s, r in self._readings.items() if self._applies(s, account_id)]
        return max((self._decayed(r, now) for r in readings), default=0.0)

    @staticmethod
    def _applies(scope: str, account_id: str | None) -> bool:
        if account_id is None:
            return True
        number = account_id.removeprefix("act_")
        if scope.startswith("buc:"):
            return scope.split(":")[1].removeprefix("act_") == number
        if "account:" in scope:
            return scope.endswith(f"account:{account_id}") or scope.endswith("account:?")
        return True

    def delay_seconds(self, account_id: str | None, now: float) -> float:
        """How long to wait before the next call touching ``account_id`` (0 when idle)."""
        if not self.enabled:
            return 0.0
        with self._lock:
            readings = [r for s, r in self._readings.items() if self._applies(s, account_id)]
        delay = 0.0
        threshold = self.threshold_pct
        midpoint = (threshold + 100.0) / 2
        for reading in readings:
            elapsed = max(now - reading.observed_at, 0.0)
            if reading.regain_seconds > elapsed:
                delay = max(delay, reading.regain_seconds - elapsed)
            pct = self._decayed(reading, now)
            if pct <= threshold:
                continue
            per_call = reading.per_call_pct or self.default_call_pct
            drain = reading.drain_pct_per_second
            if pct >= 100.0:
                # Over the quota: wait for usage to drain back to the midpoint.
                wait = (pct - midpoint) / drain
            else:
                # One call's worth of drain is the sustainable interval; the ramp makes
                # it 0 at the threshold, 1 at the midpoint and 2 at the limit.
                ramp = 2.0 * (pct - threshold) / (100.0 - threshold)
                wait = ramp * per_call / drain
            delay = max(delay, wait)
        return min(delay, self.max_wait_seconds)
