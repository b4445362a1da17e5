"""Peak memory of the GCS IO manager writing one partition, by partition size.

Run: ``python -m benchmarks.io_memory [--sizes 10000 1000000]``

Starts the GCS emulator, then for each size materializes one partition through
``MetaGCSIOManager`` (real Dagster run, real instance in a temp DAGSTER_HOME,
checkpoints on) in a fresh subprocess, and prints each child's peak RSS. Flat
memory means the 1,000,000-record row is close to the 10,000-record one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

PARTITION = "act_1|2026-11-01"
BUCKET = "io-memory-bench"
PAGE_SIZE = 500


@dataclass
class CountingPageSource:
    """A PageSource of ``total`` small insight-like records, generated lazily."""

    total: int
    fingerprint: str = "bench:insights"
    api_version: str = "v23.0"
    primary_key: tuple[str, ...] = ("ad_id", "date_start")
    manifest_extras: dict = field(default_factory=lambda: {"final": False})

    def open(self, resume_state: dict | None) -> Iterator:
        from meta_pipeline.pages import Page, RequestStats

        stats = RequestStats()
        start = int(resume_state["offset"]) if resume_state else 0
        for offset in range(start, self.total, PAGE_SIZE):
            stats.logical_requests += 1
            stats.succeeded_requests += 1
            stats.attempts += 1
            end = min(offset + PAGE_SIZE, self.total)
            records = [
                {
                    "ad_id": str(10_000_000 + i),
                    "date_start": "2026-11-01",
                    "impressions": str(i % 997),
                    "spend": f"{(i % 1000) / 100:.2f}",
                }
                for i in range(offset, end)
            ]
            state = {"offset": end} if end < self.total else None
            yield Page(
                records=records, resume_state=state, stats=stats.copy(), total_count=self.total
            )


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM); ``ru_maxrss`` keeps the parent's from before exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(size: int) -> dict:
    import dagster as dg
    from dagster_gcp import GCSResource

    from meta_pipeline.io_managers import MetaGCSIOManager
    from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME, account_day_partitions

    @dg.asset(key=["bench", "insights"], partitions_def=account_day_partitions)
    def insights() -> CountingPageSource:
        return CountingPageSource(size)

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, ["act_1"])
        result = dg.materialize(
            [insights],
            partition_key=PARTITION,
            instance=instance,
            resources={
                "io_manager": MetaGCSIOManager(
                    gcs=GCSResource(project="bench"), bucket=BUCKET, prefix="bench"
                )
            },
        )
        [event] = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
    return {
        "records": metadata["records"].value,
        "objects": metadata["objects"].value,
        "bytes": metadata["bytes"].value,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mib": _peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.child is not None:
        sys.stdout.write(json.dumps(_child(args.child)) + "\n")
        return 0

    from meta_pipeline.gcs_emulator import running_gcs_emulator

    rows = []
    with running_gcs_emulator(bucket=BUCKET) as url:
        env = {**os.environ, "STORAGE_EMULATOR_HOST": url}
        for size in args.sizes:
            completed = subprocess.run(
                [sys.executable, "-m", "benchmarks.io_memory", "--child", str(size)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if completed.returncode != 0:
                sys.stderr.write(completed.stderr[-4000:])
                return 1
            rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))

    header = f"{'records':>10} {'objects':>8} {'gzip MiB':>9} {'seconds':>8} {'peak RSS MiB':>13}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['records']:>10,} {row['objects']:>8} {row['bytes'] / 2**20:>9.1f} "
            f"{row['seconds']:>8} {row['peak_rss_mib']:>13}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    if not args.no_save and len(rows) >= 2:
        _save(rows)
    return 0


def _save(rows: list[dict]) -> None:
    from benchmarks import results

    small, large = rows[0], rows[-1]
    growth = large["peak_rss_mib"] - small["peak_rss_mib"]
    results.save(
        "memory",
        {
            "setup": (
                "one partition written through MetaGCSIOManager (real Dagster run, GCS "
                "emulator, checkpoints on), synthetic insight-like records in pages of "
                f"{PAGE_SIZE}, each size in a fresh process (peak RSS: VmHWM)"
            ),
            "sizes": rows,
            "rows": [
                results.row(f"peak RSS, {r['records']:,} records", f"{r['peak_rss_mib']:.0f} MiB")
                for r in rows
            ]
            + [
                results.row(
                    "difference",
                    f"{growth:+.1f} MiB for {large['records'] // small['records']}x the records",
                    "< 50 MiB",
                    growth < 50,
                )
            ],
            "target_ratio": {"label": "4. memory growth (< 50 MiB)", "ratio": max(growth, 0) / 50},
        },
    )
    print(results.render())


if __name__ == "__main__":
    raise SystemExit(main())
