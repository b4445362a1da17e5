"""The usual recipe, for comparison: a plain sequential extractor.

One account and day after another: fetch a page, write it to GCS as one gzip
NDJSON object, follow the cursor. On HTTP 429 or a throttle code it sleeps a
fixed exponential backoff starting at 100 ms (0.1, 0.2, 0.4, ... s) and tries
again. No pacing from the usage headers, no checkpoints, no manifests, no
Dagster. It reads what the pipeline reads for a partition: the account, its
campaigns, ad sets and ads updated that day (UTC day), their creatives by id,
and the day's ad-level insights with a synchronous GET.

The recipe usually retries only 429 and code 17; the simulator answers a
throttled edge with 80004, an account read with 613, insights with 80000 and
the app budget with 4, so all of them get the same backoff (else the baseline
would simply crash under the rate-limited scenario).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from google.cloud import storage

THROTTLE_CODES = {4, 17, 613, 80000, 80004}
FIRST_BACKOFF_SECONDS = 0.1
MAX_ATTEMPTS = 20
STATUSES = '["ACTIVE","PAUSED","DELETED","ARCHIVED","IN_PROCESS","WITH_ISSUES","CAMPAIGN_PAUSED","ADSET_PAUSED","DISAPPROVED","PENDING_REVIEW","PREAPPROVED","PENDING_BILLING_INFO"]'
INSIGHTS_FIELDS = (
    "account_id,campaign_id,adset_id,ad_id,ad_name,impressions,reach,clicks,spend,cpc,cpm,ctr,"
    "actions,date_start,date_stop"
)
OBJECT_FIELDS = {
    "campaigns": "id,account_id,name,objective,status,effective_status,updated_time",
    "adsets": "id,account_id,campaign_id,name,status,effective_status,targeting,updated_time",
    "ads": "id,account_id,campaign_id,adset_id,name,status,effective_status,creative,updated_time",
}


@dataclass
class BaselineResult:
    requests: int = 0
    throttle_errors: int = 0
    backoff_seconds: float = 0.0
    pages_written: int = 0
    records: int = 0
    partitions: int = 0
    seconds: float = 0.0
    per_partition: list[float] = field(default_factory=list)


class SequentialExtractor:
    def __init__(
        self,
        graph_url: str,
        token: str,
        bucket: str,
        page_size: int = 500,
        breakdowns: Sequence[str] = (),
    ) -> None:
        self.base = f"{graph_url.rstrip('/')}/v25.0"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.bucket = storage.Client(project="meta-bench").bucket(bucket)
        self.page_size = page_size
        self.breakdowns = ",".join(breakdowns)
        self.result = BaselineResult()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        delay = FIRST_BACKOFF_SECONDS
        for _ in range(MAX_ATTEMPTS):
            self.result.requests += 1
            response = self.session.get(f"{self.base}/{path}", params=params, timeout=120)
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if response.status_code == 429 or code in THROTTLE_CODES:
                self.result.throttle_errors += 1
                self.result.backoff_seconds += delay
                time.sleep(delay)
                delay *= 2
                continue
            if error or response.status_code >= 400:
                raise RuntimeError(f"baseline: /{path} failed with HTTP {response.status_code}")
            return dict(body)
        raise RuntimeError(f"baseline: /{path} still throttled after {MAX_ATTEMPTS} attempts")

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        query = dict(params, limit=self.page_size)
        while True:
            body = self._get(path, query)
            yield list(body.get("data", []))
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
            query = dict(query, after=after)

    def _write(self, name: str, records: Sequence[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        self.bucket.blob(name).upload_from_string(
            gzip.compress(lines.encode(), compresslevel=6), content_type="application/gzip"
        )
        self.result.pages_written += 1
        self.result.records += len(records)

    def extract(self, account_id: str, day: dt.date) -> None:
        started = time.perf_counter()
        prefix = f"baseline/{account_id}/{day.isoformat()}"
        self._write(
            f"{prefix}/ad_accounts/0.json.gz",
            [self._get(account_id, {"fields": "id,name,timezone_name,currency,account_status"})],
        )
        since = int(dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC).timestamp())
        until = since + 86_400
        creative_ids: list[str] = []
        for edge, fields in OBJECT_FIELDS.items():
            level = edge[:-1]
            filtering = json.dumps(
                [
                    {
                        "field": f"{level}.updated_time",
                        "operator": "GREATER_THAN_OR_EQUAL",
                        "value": since,
                    },
                    {"field": f"{level}.updated_time", "operator": "LESS_THAN", "value": until},
                ]
            )
            params = {"fields": fields, "filtering": filtering, "effective_status": STATUSES}
            for n, page in enumerate(self._pages(f"{account_id}/{edge}", params)):
                self._write(f"{prefix}/{edge}/{n}.json.gz", page)
                if edge == "ads":
                    creative_ids += [str(a["creative"]["id"]) for a in page if a.get("creative")]
        unique = sorted(set(creative_ids))
        for n, start in enumerate(range(0, len(unique), 50)):
            body = self._get(
                "",
                {
                    "ids": ",".join(unique[start : start + 50]),
                    "fields": "id,name,title,body,object_type,status",
                },
            )
            self._write(f"{prefix}/adcreatives/{n}.json.gz", list(body.values()))
        insights = {
            "level": "ad",
            "fields": INSIGHTS_FIELDS,
            "time_range": json.dumps({"since": day.isoformat(), "until": day.isoformat()}),
            "time_increment": 1,
        }
        if self.breakdowns:
            insights["breakdowns"] = self.breakdowns
        for n, page in enumerate(self._pages(f"{account_id}/insights", insights)):
            self._write(f"{prefix}/insights/{n}.json.gz", page)
        self.result.partitions += 1
        self.result.per_partition.append(time.perf_counter() - started)


def run_baseline(
    graph_url: str,
    token: str,
    bucket: str,
    partitions: Sequence[tuple[str, dt.date]],
    page_size: int = 500,
    breakdowns: Sequence[str] = (),
) -> BaselineResult:
    """Extract ``partitions`` one after another; the result carries the time it took."""
    extractor = SequentialExtractor(graph_url, token, bucket, page_size, breakdowns)
    started = time.perf_counter()
    for account_id, day in partitions:
        extractor.extract(account_id, day)
    extractor.result.seconds = time.perf_counter() - started
    return extractor.result


def main(argv: list[str]) -> int:
    """``python -m benchmarks.baselines.sequential '<json spec>'``: run in its own process."""
    import dataclasses
    import os
    import sys

    spec = json.loads(argv[0])
    partitions = [
        (key.split("|")[0], dt.date.fromisoformat(key.split("|")[1])) for key in spec["partitions"]
    ]
    result = run_baseline(
        os.environ["META_GRAPH_URL"],
        os.environ["META_ACCESS_TOKEN"],
        os.environ["GCS_BUCKET"],
        partitions,
        page_size=int(spec.get("page_size", 500)),
        breakdowns=spec.get("breakdowns", []),
    )
    sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
