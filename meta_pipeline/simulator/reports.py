"""Async insights report runs (AdReportRun): creation, polling, results."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from .world import Account, stable_hash

JsonDict = dict[str, Any]

NOT_STARTED = "Job Not Started"
STARTED = "Job Started"
RUNNING = "Job Running"
COMPLETED = "Job Completed"
FAILED = "Job Failed"
SKIPPED = "Job Skipped"


@dataclass
class ReportRun:
    id: str
    account: Account
    date_start: dt.date
    date_stop: dt.date
    rows: list[JsonDict]
    fault: str | None  # job_failed, job_skipped, job_stuck or None
    polls_to_complete: int
    time_ref: int = field(default_factory=lambda: int(time.time()))
    polls: int = 0
    status: str = NOT_STARTED
    percent: int = 0
    time_completed: int | None = None

    def poll(self) -> None:
        """Advance the run by one status read."""
        self.polls += 1
        if self.status in (COMPLETED, FAILED, SKIPPED):
            return
        if self.fault == "job_stuck":
            self.status, self.percent = (NOT_STARTED, 0) if self.polls == 1 else (RUNNING, 0)
            return
        if self.polls >= self.polls_to_complete:
            if self.fault == "job_failed":
                self.status = FAILED
            elif self.fault == "job_skipped":
                self.status, self.percent = SKIPPED, 0
            else:
                self.status, self.percent = COMPLETED, 100
            self.time_completed = int(time.time())
        elif self.polls == self.polls_to_complete - 1:
            # Meta can read 100 % one poll before "Job Completed": clients must key on status.
            self.status, self.percent = RUNNING, 100
        else:
            self.status = STARTED if self.polls == 1 else RUNNING
            self.percent = 100 * self.polls // self.polls_to_complete

    def describe(self, api_version: str) -> JsonDict:
        body: JsonDict = {
            "id": self.id,
            "account_id": self.account.account_id,
            "async_status": self.status,
            "async_percent_completion": self.percent,
            "date_start": self.date_start.isoformat(),
            "date_stop": self.date_stop.isoformat(),
            "emails": [],
            "friendly_name": "",
            "is_bookmarked": False,
            "is_running": self.status not in (COMPLETED, FAILED, SKIPPED),
            "schedule_id": "0",
            "time_ref": self.time_ref,
        }
        if self.time_completed is not None:
            body["time_completed"] = self.time_completed
        if self.status == FAILED and _major(api_version) >= 25:
            body.update(
                error_code=1,
                error_subcode=99,
                error_message="An unknown error occurred while generating the report",
                error_user_title="Report generation failed",
                error_user_msg="Retry the report, or ask for a smaller date range or fewer objects.",
            )
        return body


class ReportStore:
    def __init__(self, seed: int) -> None:
        self._prefix = f"9{stable_hash(seed, 'runs') % 10000:04d}"
        self._runs: dict[str, ReportRun] = {}
        self._count = 0

    def create(
        self,
        account: Account,
        date_start: dt.date,
        date_stop: dt.date,
        rows: list[JsonDict],
        fault: str | None,
        polls_to_complete: int,
    ) -> ReportRun:
        self._count += 1
        run = ReportRun(
            id=f"{self._prefix}{self._count:011d}",
            account=account,
            date_start=date_start,
            date_stop=date_stop,
            rows=rows,
            fault=fault,
            polls_to_complete=max(0, polls_to_complete),
        )
        self._runs[run.id] = run
        return run

    def get(self, run_id: str) -> ReportRun | None:
        return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)


def _major(api_version: str) -> int:
    try:
        return int(api_version.lstrip("v").split(".")[0])
    except ValueError:
        return 0
