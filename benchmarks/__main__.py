"""``make bench``: every benchmark, one after the other (figures print as they come).

The issue-8 scenarios save their figures to docs/benchmarks/results.json; the
Markdown table (results.md) and the chart (chart.png) are rebuilt at the end.
``python -m benchmarks --quick`` runs the same code at smoke-test sizes and
writes to a temp directory instead (META_BENCH_OUT), leaving docs/ alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

BENCHMARKS: tuple[tuple[str, list[str], list[str]], ...] = (
    # module, arguments, arguments with --quick
    # The size: 4 accounts x 30 days, one range run per account (the backfill policy).
    ("benchmarks.backfill", ["--days", "30"], ["--accounts", "2", "--days", "2"]),
    # The same on the local instance's SQLite storage.
    (
        "benchmarks.backfill",
        ["--storage", "sqlite", "--days", "30", "--no-baseline", "--save-as", "backfill_sqlite"],
        [
            "--storage",
            "sqlite",
            "--accounts",
            "1",
            "--days",
            "1",
            "--no-baseline",
            "--save-as",
            "backfill_sqlite",
        ],
    ),
    # The same with a Graph API latency nearer Meta's own (hundreds of ms a request): where the
    # bound is the API's and the cores are not shared with a simulator at full speed.
    (
        "benchmarks.backfill",
        [
            "--days",
            "30",
            "--latency-ms",
            "250",
            "--no-baseline",
            "--save-as",
            "backfill_slow_api",
        ],
        [
            "--accounts",
            "1",
            "--days",
            "1",
            "--latency-ms",
            "250",
            "--no-baseline",
            "--save-as",
            "backfill_slow_api",
        ],
    ),
    ("benchmarks.rate_limited", [], ["--days", "2", "--budget", "20", "--window", "10"]),
    ("benchmarks.cost_per_record", [], ["--scale", "2", "--min-records", "1000"]),
    ("benchmarks.io_memory", [], ["--sizes", "1000", "20000"]),
    ("benchmarks.simulator_throughput", ["--seconds", "5"], ["--seconds", "1"]),
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    quick = "--quick" in args
    env = dict(os.environ)
    if quick:
        env["META_BENCH_OUT"] = tempfile.mkdtemp(prefix="meta-bench-quick-")
        print(f"quick run: results in {env['META_BENCH_OUT']}", flush=True)
    failed = 0
    for module, full, small in BENCHMARKS:
        print(f"== {module} {' '.join(small if quick else full)}", flush=True)
        if (
            "pgbouncer" in full
            and not shutil.which("pgbouncer")
            and not os.path.exists("/usr/sbin/pgbouncer")
        ):
            print("skipped: pgbouncer is not installed (Debian package pgbouncer)", flush=True)
            continue
        command = [sys.executable, "-m", module, *(small if quick else full)]
        failed += subprocess.call(command, env=env) != 0
    if quick:
        return 1 if failed else 0
    from benchmarks import results

    print("== results (docs/benchmarks/results.md; README section: results.readme_section())")
    print(results.render())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
