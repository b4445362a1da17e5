"""Time as the client sees it: injectable so tests never wait for real throttles."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic-ish scale; only differences matter."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def today(self) -> dt.date:
        """The current UTC calendar day (bounds insights date windows)."""
        ...


class SystemClock:
    """Real time: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def today(self) -> dt.date:
        return dt.datetime.now(dt.UTC).date()


class FakeClock:
    """A clock that records every sleep and advances instantly.

    Used by tests and dry runs: a throttle that asks for ten minutes costs nothing
    but is still visible in ``sleeps``.
    """

    def __init__(self, start: float = 0.0, today: dt.date | None = None) -> None:
        self._now = start
        self._today = today or dt.datetime.now(dt.UTC).date()
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def today(self) -> dt.date:
        return self._today

    @property
    def slept(self) -> float:
        return sum(self.sleeps)
