"""Call budgets that fill with calls and drain linearly, and the usage headers Meta sends.

A budget of ``capacity`` calls drains at ``capacity / window`` calls per second,
so a full budget empties in one window. A call that pushes the level over the
capacity is refused and starts a block that lasts until the level has drained
back to ``RECOVERY_FRACTION`` of the capacity. Calls made during a block still
count (as at Meta), so hammering a throttled API keeps it throttled.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

RECOVERY_FRACTION = 0.8
# Unlimited budgets still report usage, as a share of this nominal capacity.
NOMINAL_CAPACITY = 100_000
ACCESS_TIER = "standard_access"
MANAGEMENT = "ads_management"
INSIGHTS = "ads_insights"


class Budget:
    def __init__(self, capacity: int | None, window_seconds: float, clock: Callable[[], float]):
        self.capacity = capacity
        self.window_seconds = max(window_seconds, 1e-6)
        self._clock = clock
        self.level = 0.0
        self.blocked_until = 0.0
        self._last = clock()

    @property
    def _effective_capacity(self) -> int:
        return self.capacity if self.capacity is not None else NOMINAL_CAPACITY

    @property
    def drain_per_second(self) -> float:
        return self._effective_capacity / self.window_seconds

    def _drain(self) -> float:
        now = self._clock()
        self.level = max(0.0, self.level - (now - self._last) * self.drain_per_second)
        self._last = now
        return now

    def spend(self) -> bool:
        """Count one call; False when the call must be refused (over budget or blocked)."""
        now = self._drain()
        self.level += 1.0
        if self.capacity is None:
            return True
        if now < self.blocked_until or self.level > self.capacity:
            target = self.capacity * RECOVERY_FRACTION
            self.blocked_until = max(
                self.blocked_until, now + (self.level - target) / self.drain_per_second
            )
            return False
        return True

    def usage_pct(self) -> float:
        self._drain()
        return self.level / self._effective_capacity * 100.0

    def seconds_to_regain(self) -> float:
        now = self._drain()
        return max(0.0, self.blocked_until - now)

    def seconds_to_empty(self) -> float:
        self._drain()
        return self.level / self.drain_per_second

    def reset(self) -> None:
        self.level = 0.0
        self.blocked_until = 0.0
        self._last = self._clock()


@dataclass(frozen=True)
class Throttle:
    """Which budget refused a call."""

    scope: str  # "app" or "account"
    bucket: str  # MANAGEMENT or INSIGHTS
    account_id: str | None
    regain_seconds: float


class RateLimiter:
    def __init__(
        self,
        app_calls: int | None,
        account_calls: int | None,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app_calls = app_calls
        self._account_calls = account_calls
        self._window = window_seconds
        self._clock = clock
        self.app = Budget(app_calls, window_seconds, clock)
        self._accounts: dict[tuple[str, str], Budget] = {}

    def account_budget(self, account_id: str, bucket: str) -> Budget:
        key = (account_id, bucket)
        budget = self._accounts.get(key)
        if budget is None:
            budget = Budget(self._account_calls, self._window, self._clock)
            self._accounts[key] = budget
        return budget

    def spend(self, account_id: str | None, bucket: str) -> Throttle | None:
        """Count a call against the app and (if any) the account; say who refused it."""
        app_ok = self.app.spend()
        account_ok = True
        if account_id is not None:
            account_ok = self.account_budget(account_id, bucket).spend()
        if not app_ok:
            return Throttle("app", bucket, account_id, self.app.seconds_to_regain())
        if not account_ok and account_id is not None:
            regain = self.account_budget(account_id, bucket).seconds_to_regain()
            return Throttle("account", bucket, account_id, regain)
        return None

    def reset(self) -> None:
        self.app.reset()
        self._accounts.clear()

    def headers(self, account_id: str | None, insights: bool) -> dict[str, str]:
        """The usage headers of a response, percentages of each quota (may exceed 100)."""
        app_pct = self.app.usage_pct()
        headers = {
            "x-app-usage": _dumps(
                {
                    "call_count": math.floor(app_pct),
                    "total_cputime": math.floor(app_pct * 0.6),
                    "total_time": math.floor(app_pct * 0.8),
                }
            )
        }
        if account_id is None:
            return headers
        management = self.account_budget(account_id, MANAGEMENT)
        insights_budget = self.account_budget(account_id, INSIGHTS)
        headers["x-ad-account-usage"] = _dumps(
            {
                "acc_id_util_pct": round(management.usage_pct(), 2),
                "reset_time_duration": math.ceil(management.seconds_to_empty()),
                "ads_api_access_tier": ACCESS_TIER,
            }
        )
        headers["x-business-use-case-usage"] = _dumps(
            {
                account_id: [
                    business_use_case_entry(bucket, budget.usage_pct(), budget.seconds_to_regain())
                    for bucket, budget in ((MANAGEMENT, management), (INSIGHTS, insights_budget))
                ]
            }
        )
        if insights:
            headers["x-fb-ads-insights-throttle"] = _dumps(
                {
                    "app_id_util_pct": round(app_pct, 2),
                    "acc_id_util_pct": round(insights_budget.usage_pct(), 2),
                    "ads_api_access_tier": ACCESS_TIER,
                }
            )
        return headers


def business_use_case_entry(bucket: str, pct: float, regain_seconds: float) -> dict[str, object]:
    return {
        "type": bucket,
        "call_count": math.floor(pct),
        "total_cputime": math.floor(pct * 0.6),
        "total_time": math.floor(pct * 0.8),
        # Meta reports the regain time in minutes; any block reads at least 1.
        "estimated_time_to_regain_access": math.ceil(regain_seconds / 60) if regain_seconds else 0,
        "ads_api_access_tier": ACCESS_TIER,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
