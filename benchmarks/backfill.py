"""Scenario 1: latency-bound backfill, and the sequential baseline on the same partitions.

Run: ``python -m benchmarks.backfill [--accounts 4] [--days 30] [--latency-ms 50]``

Every asset of ``accounts x days`` partitions through the ``meta_extract`` job,
one Dagster run per account (all its days, a range run as the backfill policy
launches it; --days-per-run to batch differently), accounts in parallel and each account's days
one after another (what deploy/dagster.yaml's one-run-per-account limit
gives), against the simulator with a fixed latency per request and no faults.
Bound = requests made x latency / accounts in parallel. Then the baseline
extracts the same partitions and its time is compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks import results
from benchmarks.harness import (
    ROOT,
    TOKEN,
    BusySampler,
    WorkerSpec,
    bench_world,
    requests_made,
    run_workers,
    services_cpu_seconds,
    throttled,
)
from meta_pipeline.simulator import SimulatorConfig

TODAY = dt.date(2026, 11, 28)


def run_baseline(
    world: Any, partitions: list[str], page_size: int = 500, breakdowns: list[str] | None = None
) -> dict[str, Any]:
    """The sequential extractor in its own process (the simulator is in this one)."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.baselines.sequential",
            json.dumps(
                {"partitions": partitions, "page_size": page_size, "breakdowns": breakdowns or []}
            ),
        ],
        env=world.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr[-4000:])
        raise RuntimeError("baseline failed")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--scale", type=float, default=1.0, help="1: ~100 ads per account")
    parser.add_argument(
        "--storage", choices=("postgres", "pgbouncer", "sqlite"), default="postgres"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--save-as", default="backfill", help="section of results.json")
    parser.add_argument("--profile", help="write the first worker's cProfile stats here")
    parser.add_argument(
        "--days-per-run",
        type=int,
        default=0,
        help="partitions per Dagster run (0: all of an account's days, as a backfill runs them)",
    )
    args = parser.parse_args(argv)

    latency = args.latency_ms / 1000
    config = SimulatorConfig(
        seed=7,
        accounts=args.accounts,
        scale=args.scale,
        profile="clean",
        token=TOKEN,
        today=TODAY,
        latency_ms=args.latency_ms,
    )
    days = [TODAY - dt.timedelta(days=n) for n in range(args.days, 0, -1)]
    # The simulator finishes a report after two polls whatever the delay; polling at the
    # request latency keeps report waits out of a benchmark about request latency.
    env = {"META_ASYNC_POLL_SECONDS": str(latency)}
    with bench_world(config, env, storage=args.storage) as world:
        for account in world.accounts:  # generate the world before the clock starts
            for kind in ("campaigns", "adsets", "ads", "adcreatives"):
                world.sim.world.objects(account, kind)
        per_run = args.days_per_run or args.days
        specs = [
            WorkerSpec([f"{a}|{d.isoformat()}" for d in days], partitions_per_run=per_run)
            for a in world.accounts
        ]
        specs[0].profile_to = args.profile
        partitions = [key for spec in specs for key in spec.partitions]
        print(
            f"backfill: {args.accounts} account(s) x {args.days} day(s) = {len(partitions)} "
            f"partitions, latency {args.latency_ms:.0f} ms, {args.storage} instance",
            flush=True,
        )
        world.reset()
        sessions_before = world.storage_sessions()
        services_before = services_cpu_seconds()
        with BusySampler() as sampler:
            started = time.time()
            wall, reports = run_workers(world, specs)
        services_after = services_cpu_seconds()
        busy = sampler.busy_between(started, started + wall)
        cores = os.cpu_count() or 1
        stats = world.stats()
        sessions_after = world.storage_sessions()
        connect_ms = world.connect_ms()
        n_requests = requests_made(stats)
        runs = [run for report in reports for run in report["runs"]]
        failed = [r["partition"] for r in runs if not r["success"]]
        bound = n_requests * latency / args.accounts
        per_partition = n_requests / len(partitions)
        # Per partition: a range run's figures divided by its partitions.
        mean = {
            k: sum(r[k] for r in runs) / len(partitions)
            for k in ("wall_s", "cpu_s", "events", "launch_s", "in_steps_s", "between_steps_s")
        }
        overhead = mean["wall_s"] - per_partition * latency
        ours = {
            "accounts": args.accounts,
            "days": args.days,
            "latency_ms": args.latency_ms,
            "wall_s": round(wall, 2),
            "requests": n_requests,
            "throttled": throttled(stats),
            "bound_s": round(bound, 2),
            "wall_over_bound": round(wall / bound, 2),
            "requests_per_partition": round(per_partition, 2),
            "partitions_per_run": per_run,
            "runs": len(runs),
            "run_wall_s_per_partition": round(mean["wall_s"], 3),
            "run_cpu_s_per_partition": round(mean["cpu_s"], 3),
            "dagster_overhead_s_per_partition": round(overhead, 3),
            "events_per_partition": round(mean["events"], 1),
            "run_launch_s_per_partition": round(mean["launch_s"], 3),
            "in_steps_s_per_partition": round(mean["in_steps_s"], 3),
            "between_steps_s_per_partition": round(mean["between_steps_s"], 3),
            "worker_startup_s_mean": round(statistics.fmean(r["startup_s"] for r in reports), 2),
            "storage_connections_per_partition": (
                round((sessions_after - sessions_before) / len(partitions), 1)
                if sessions_after is not None and sessions_before is not None
                else None
            ),
            "storage_connect_ms": round(connect_ms, 1) if connect_ms is not None else None,
            # Every process on the machine (workers, PostgreSQL, simulator, GCS emulator).
            "machine_cpu_s_per_partition": (
                round(busy / len(partitions), 3) if busy is not None else None
            ),
            "machine_cpu_utilization": (
                round(busy / (cores * wall), 3) if busy is not None else None
            ),
            "cores": cores,
            # Where the machine's CPU went, per partition: the Dagster runs themselves, and the
            # services standing in for remote ones (simulator = this process, GCS emulator,
            # PostgreSQL).
            "cpu_s_per_partition_by_process": {
                "dagster_runs": round(mean["cpu_s"], 3),
                **{
                    ("simulator" if label == "self" else label): round(
                        (services_after[label] - services_before[label]) / len(partitions), 3
                    )
                    for label in services_after
                },
            },
            "failed_partitions": failed,
            "event_types_per_partition": {
                kind: round(sum(r["event_types"].get(kind, 0) for r in runs) / len(partitions), 1)
                for kind in sorted({k for r in runs for k in r["event_types"]})
            },
            "requests_by_path": stats.get("by_path", {}),
        }
        print(json.dumps({k: v for k, v in ours.items() if k != "requests_by_path"}), flush=True)
        baseline: dict[str, Any] = {}
        if not args.no_baseline:
            world.reset()
            baseline = run_baseline(world, partitions)
            base_stats = world.stats()
            baseline = {
                "wall_s": round(baseline["seconds"], 2),
                "requests": requests_made(base_stats),
                "throttled": throttled(base_stats),
                "throttle_errors_seen": baseline["throttle_errors"],
                "records": baseline["records"],
            }
            print(f"baseline: {json.dumps(baseline)}", flush=True)

    if failed:
        print(f"FAILED partitions: {failed}", file=sys.stderr)
        for run in runs:
            if not run["success"]:
                print(f"  {run['partition']}: {run.get('error')}", file=sys.stderr)
    if args.no_save:
        return 1 if failed else 0
    table = [
        results.row(
            "wall time / bound",
            f"{ours['wall_over_bound']}x ({ours['wall_s']:.0f} s vs {bound:.1f} s)",
            "<= 1.5x",
            ours["wall_over_bound"] <= 1.5,
        ),
        results.row("requests per partition", f"{per_partition:.1f}"),
        results.row(
            "Dagster overhead per partition",
            f"{overhead:.2f} s (run time {mean['wall_s']:.2f} s per partition of which "
            f"{per_partition * latency:.2f} s request latency; launch "
            f"{mean['launch_s']:.2f} s, between steps {mean['between_steps_s']:.2f} s; "
            f"{mean['cpu_s']:.2f} CPU s, {mean['events']:.0f} events"
            + (
                f", {ours['storage_connections_per_partition']:.0f} storage connections"
                if ours["storage_connections_per_partition"] and args.storage == "postgres"
                else ""
            )
            + ")",
        ),
    ]
    baseline_rows = []
    if baseline:
        baseline_rows.append(
            results.row(
                "scenario 1: ours / baseline time",
                f"{wall / baseline['wall_s']:.2f} ({ours['wall_s']:.0f} s vs "
                f"{baseline['wall_s']:.0f} s); throttle errors {ours['throttled']} vs "
                f"{baseline['throttled']}",
            )
        )
    results.save(
        args.save_as,
        {
            "setup": (
                f"{args.accounts} account(s) x {args.days} day(s) = {len(partitions)} partitions, every "
                f"asset, scale {args.scale:g} (~{int(100 * args.scale)} ads per account), "
                f"{args.latency_ms:.0f} ms per request, clean profile; one Dagster run "
                f"(`execute_in_process`) per {per_run} partition(s) of an account"
                + (
                    " (all its days, as the backfill policy runs them)"
                    if per_run == args.days
                    else ""
                )
                + f", {args.accounts} account(s) in parallel, each account's days in series; "
                f"{args.storage} instance storage"
                + {
                    "postgres": " (deploy/dagster.yaml)",
                    "pgbouncer": " (deploy/dagster.yaml, PgBouncer session pooling in front)",
                }.get(args.storage, "")
                + f"; async report polls every {args.latency_ms:.0f} ms"
            ),
            "ours": ours,
            "baseline": baseline,
            "rows": table,
            "baseline_rows": baseline_rows,
            "chart": {
                "bound_s": bound,
                "ours_s": wall,
                "baseline_s": baseline.get("wall_s", 0.0),
            },
            "target_ratio": {
                "label": f"1. backfill wall / bound (<= 1.5x), {args.storage}, {args.latency_ms:.0f} ms",
                "ratio": ours["wall_over_bound"] / 1.5,
            },
        },
    )
    print(results.render())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
