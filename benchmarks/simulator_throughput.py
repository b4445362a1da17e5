"""Pages per second the Graph API simulator serves with the ``clean`` profile.

Run: ``.venv/bin/python -m benchmarks.simulator_throughput [--seconds 5] [--clients 1]``.
Reads pages of 100 ads (default fields plus a few) over real HTTP with a
keep-alive ``requests`` session, following cursors and starting over at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time

import requests

from meta_pipeline.simulator import SimulatorConfig, run_simulator

PAGE_SIZE = 100
FIELDS = "id,name,status,effective_status,adset_id,campaign_id,created_time,updated_time"


def _read_pages(base_url: str, account_id: str, deadline: float, counts: list[int]) -> None:
    session = requests.Session()
    params = {
        "access_token": "sim-token",
        "fields": FIELDS,
        "limit": str(PAGE_SIZE),
        "effective_status": '["ACTIVE","PAUSED","ARCHIVED","DELETED","CAMPAIGN_PAUSED",'
        '"ADSET_PAUSED","WITH_ISSUES","PENDING_REVIEW","DISAPPROVED","IN_PROCESS"]',
    }
    pages = records = 0
    after: str | None = None
    while time.perf_counter() < deadline:
        query = dict(params, after=after) if after else params
        response = session.get(f"{base_url}/v25.0/{account_id}/ads", params=query, timeout=30)
        response.raise_for_status()
        body = response.json()
        pages += 1
        records += len(body["data"])
        paging = body["paging"]
        after = paging["cursors"]["after"] if "next" in paging else None
    counts.extend((pages, records))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--scale", type=float, default=50.0, help="50 -> ~5000 ads per account")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    config = SimulatorConfig(seed=7, accounts=1, scale=args.scale, today=dt.date(2026, 11, 28))
    with run_simulator(config) as sim:
        account_id = sim.world.accounts[0].id
        sim.world.objects(account_id, "ads")  # generate before timing
        deadline = time.perf_counter() + 0.5
        _read_pages(sim.base_url, account_id, deadline, [])  # warm-up
        sim.reset_stats()
        results: list[list[int]] = [[] for _ in range(args.clients)]
        started = time.perf_counter()
        deadline = started + args.seconds
        threads = [
            threading.Thread(target=_read_pages, args=(sim.base_url, account_id, deadline, counts))
            for counts in results
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        pages = sum(r[0] for r in results)
        records = sum(r[1] for r in results)
        served = sim.stats()["by_status"].get("200", 0)
    if not args.no_save:
        from benchmarks import results

        results.save(
            "simulator_throughput",
            {"pages_per_second": pages / elapsed, "clients": args.clients, "rows": []},
        )
    print(
        f"simulator throughput (clean, {args.clients} client(s), {args.seconds:.0f}s): "
        f"{pages / elapsed:.0f} pages/s of {PAGE_SIZE} records "
        f"({records / elapsed:.0f} records/s; {served} responses served)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
