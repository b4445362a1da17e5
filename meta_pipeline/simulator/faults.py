"""Fault names, profiles, and the schedule deciding which request gets which fault.

Injected faults (``inject``) are served first, FIFO, to the next matching
requests. Rate faults are drawn from the seed and the request's sequence
number, so the same client behaviour sees the same faults on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import GraphError
from .world import stable_hash

# Error faults: the response is replaced by a Graph error.
ERROR_FAULTS = (
    "http_429",
    "http_500",
    "http_503",
    "code_4",
    "code_17",
    "code_613",
    "code_80000",
    "code_80004",
    "reduce_data",
    "expired_cursor",
    "code_100",
    "code_190",
    "code_200",
)
# Transport faults: the bytes on the wire are wrong.
TRANSPORT_FAULTS = ("tcp_reset", "truncated_body", "html_200", "invalid_json_200", "hang")
# Paging faults: a list response is altered.
PAGING_FAULTS = ("empty_page_with_next", "foreign_next")
# Report faults: the next report run created goes wrong.
JOB_FAULTS = ("job_failed", "job_skipped", "job_stuck")
FAULTS = ERROR_FAULTS + TRANSPORT_FAULTS + PAGING_FAULTS + JOB_FAULTS

# Chaos rate-draws a hang only when a hang is short enough not to stall whole suites.
CHAOS_MAX_HANG_SECONDS = 5.0


@dataclass(frozen=True)
class Profile:
    name: str
    rates: Mapping[str, float]
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    app_budget_calls: int | None = None
    account_budget_calls: int | None = None


PROFILES: dict[str, Profile] = {
    "clean": Profile("clean", {}),
    "realistic": Profile(
        "realistic",
        {
            "http_500": 0.004,
            "http_503": 0.004,
            "code_80004": 0.001,
            "tcp_reset": 0.001,
            "job_failed": 0.02,
        },
        latency_ms=15.0,
        latency_jitter_ms=40.0,
        app_budget_calls=20_000,
        account_budget_calls=2_000,
    ),
    "chaos": Profile(
        "chaos",
        {
            **{name: 0.01 for name in ERROR_FAULTS + TRANSPORT_FAULTS + PAGING_FAULTS},
            "hang": 0.003,
            **{name: 0.1 for name in JOB_FAULTS},
        },
        latency_ms=2.0,
        latency_jitter_ms=10.0,
    ),
}


def check_fault(name: str) -> str:
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; expected one of {', '.join(FAULTS)}")
    return name


@dataclass
class Injection:
    fault: str
    remaining: int
    path_contains: str | None


@dataclass
class FaultPlan:
    seed: int
    rates: dict[str, float]
    queue: list[Injection] = field(default_factory=list)
    draws: int = 0

    @classmethod
    def build(
        cls, seed: int, profile: Profile, overrides: Mapping[str, float], hang_seconds: float
    ) -> FaultPlan:
        rates = dict(profile.rates)
        if profile.name == "chaos" and hang_seconds > CHAOS_MAX_HANG_SECONDS:
            rates.pop("hang", None)
        for name, rate in overrides.items():
            check_fault(name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {name!r} must be within [0, 1], got {rate}")
            rates[name] = rate
        return cls(seed=seed, rates={k: v for k, v in rates.items() if v > 0})

    def inject(self, fault: str, times: int = 1, path_contains: str | None = None) -> None:
        check_fault(fault)
        if times < 1:
            raise ValueError("times must be at least 1")
        self.queue.append(Injection(fault, times, path_contains or None))

    def clear(self) -> None:
        self.queue.clear()

    def choose(self, path: str, applicable: frozenset[str]) -> str | None:
        """The fault for this request, if any: injected ones first, then the seeded draw."""
        for injection in self.queue:
            if injection.fault not in applicable:
                continue
            if injection.path_contains is not None and injection.path_contains not in path:
                continue
            injection.remaining -= 1
            if injection.remaining <= 0:
                self.queue.remove(injection)
            return injection.fault
        if not self.rates:
            return None
        self.draws += 1
        roll = stable_hash(self.seed, "fault", self.draws) / 2**64
        cumulative = 0.0
        for name in FAULTS:
            rate = self.rates.get(name)
            if rate is None or name not in applicable:
                continue
            cumulative += rate
            if roll < cumulative:
                return name
        return None


def fault_error(fault: str, *, retry_after_seconds: int, parameter: str) -> GraphError:
    """The Graph error an error fault produces (as Meta words it)."""
    if fault == "http_429":
        return GraphError(
            4,
            "(#4) Application request limit reached",
            http_status=429,
            is_transient=True,
            headers={"retry-after": str(retry_after_seconds)},
        )
    if fault == "http_500":
        return GraphError(
            1, "An unknown error occurred", http_status=500, subcode=99, is_transient=False
        )
    if fault == "http_503":
        return GraphError(2, "Service temporarily unavailable", http_status=503, is_transient=True)
    if fault == "code_4":
        return GraphError(
            4, "(#4) Application request limit reached", subcode=1504022, is_transient=True
        )
    if fault == "code_17":
        return GraphError(
            17, "(#17) User request limit reached", subcode=2446079, is_transient=True
        )
    if fault == "code_613":
        return GraphError(
            613,
            "(#613) Calls to this api have exceeded the rate limit.",
            subcode=1487742,
            is_transient=True,
        )
    if fault == "code_80000":
        return GraphError(
            80000,
            "(#80000) There have been too many calls from this ad-account. Wait a bit and try again.",
            subcode=2446079,
            is_transient=True,
        )
    if fault == "code_80004":
        return GraphError(
            80004,
            "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
            subcode=2446079,
            is_transient=True,
        )
    if fault == "reduce_data":
        return GraphError(
            1,
            "Please reduce the amount of data you're asking for, then retry your request",
            http_status=500,
            is_transient=False,
        )
    if fault == "expired_cursor":
        return GraphError(
            100,
            "(#100) Invalid parameter",
            user_title="Invalid cursor",
            user_msg="The 'after' cursor is invalid or has expired. Restart from the first page.",
        )
    if fault == "code_100":
        return GraphError(
            100,
            f"(#100) Invalid parameter: {parameter}",
            user_msg=f"The parameter '{parameter}' is not valid for this request.",
        )
    if fault == "code_190":
        return GraphError(
            190,
            "Error validating access token: Session has expired on Friday, 27-Nov-26 "
            "10:00:00 PST. The current time is Saturday, 28-Nov-26 10:00:00 PST.",
            subcode=463,
        )
    if fault == "code_200":
        return GraphError(
            200,
            "(#200) Requires business_management permission to manage the object",
            http_status=403,
        )
    raise ValueError(f"{fault!r} is not an error fault")


THROTTLE_FAULTS = frozenset({"code_4", "code_17", "code_613", "code_80000", "code_80004"})
