"""``make demo``: the main job end to end on the simulator and a local GCS emulator.

Starts both services, registers the simulated ad accounts as partitions in a
local Dagster instance (``.demo/dagster_home``), materializes every asset for the
last days of every account through Dagster, and prints what was written where.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dagster as dg
from google.cloud import storage

from meta_pipeline.gcs_emulator import running_gcs_emulator
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.pages import RequestStats

DEMO_BUCKET = "meta-demo"
DEMO_TOKEN = "demo-token"
DEMO_PROJECT = "meta-demo"


@dataclass
class AssetSummary:
    partitions: int = 0
    records: int = 0
    stats: RequestStats = field(default_factory=RequestStats)

    def add(self, records: int, stats: RequestStats) -> None:
        self.partitions += 1
        self.records += records
        self.stats.logical_requests += stats.logical_requests
        self.stats.succeeded_requests += stats.succeeded_requests
        self.stats.retries += stats.retries
        self.stats.throttle_wait_seconds += stats.throttle_wait_seconds


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo_days(today: dt.date, days: int) -> list[dt.date]:
    """The ``days`` complete days before ``today``, oldest first."""
    return [today - dt.timedelta(days=n) for n in range(days, 0, -1)]


def run_demo(
    workdir: Path,
    *,
    accounts: int = 3,
    days: int = 7,
    seed: int = 42,
    scale: float = 1.0,
    profile: str = "realistic",
    out: TextIO = sys.stdout,
) -> int:
    from meta_pipeline.simulator import SimulatorConfig, run_simulator

    workdir.mkdir(parents=True, exist_ok=True)
    dagster_home = (workdir / "dagster_home").resolve()
    dagster_home.mkdir(exist_ok=True)
    instance_config = dagster_home / "dagster.yaml"
    if not instance_config.exists():
        instance_config.write_text("telemetry:\n  enabled: false\n")
    today = dt.date.today()
    config = SimulatorConfig(
        seed=seed, accounts=accounts, scale=scale, profile=profile, token=DEMO_TOKEN, today=today
    )
    with (
        run_simulator(config, host="127.0.0.1", port=0) as sim,
        running_gcs_emulator(bucket=DEMO_BUCKET) as gcs_url,
    ):
        env = {
            "DAGSTER_HOME": str(dagster_home),
            "META_ACCESS_TOKEN": DEMO_TOKEN,
            "META_GRAPH_URL": sim.base_url,
            "GCS_BUCKET": DEMO_BUCKET,
            "GCS_PREFIX": "",
            "GCS_PROJECT": DEMO_PROJECT,
            "STORAGE_EMULATOR_HOST": gcs_url,
        }
        with _environment(env):
            return _materialize(sim.world, today, days, gcs_url, out)


def _materialize(world: object, today: dt.date, days: int, gcs_url: str, out: TextIO) -> int:
    # Imported here: the definitions read their non-secret settings from the environment.
    from meta_pipeline.accounts import add_accounts
    from meta_pipeline.definitions import build_definitions
    from meta_pipeline.jobs import EXTRACTED_ASSET_KEYS, extract_job

    # Built now, not at import: the resources must see the demo's environment.
    defs = build_definitions()
    account_ids = [a.id for a in world.accounts]  # type: ignore[attr-defined]
    instance = dg.DagsterInstance.get()
    add_accounts(instance, account_ids)
    job = defs.resolve_job_def(extract_job.name)
    keys = [f"{a}|{d.isoformat()}" for a in account_ids for d in demo_days(today, days)]
    print(
        f"meta_pipeline demo: {len(account_ids)} simulated ad accounts x {days} days "
        f"= {len(keys)} partitions, every asset",
        file=out,
    )
    started = time.monotonic()
    failed = 0
    for done, key in enumerate(keys, start=1):
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            # The event log keeps every event; the console shows only what needs attention.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        failed += 0 if result.success else 1
        rate = done / max(time.monotonic() - started, 1e-6)
        status = "ok" if result.success else "FAILED"
        print(
            f"  [{done:>3}/{len(keys)}] {key} {status}  ({rate:.1f} partitions/s, "
            f"~{(len(keys) - done) / rate:.0f}s left)",
            file=out,
            flush=True,
        )
    store = PartitionStore(storage.Client(project=DEMO_PROJECT), DEMO_BUCKET, "")
    print("\nWhat was written (per asset):", file=out)
    header = f"  {'asset':<27}{'partitions':>11}{'records':>9}{'requests':>9}{'retries':>8}{'throttle s':>11}{'accuracy':>9}"
    print(header, file=out)
    for asset_key in [*EXTRACTED_ASSET_KEYS, dg.AssetKey(["meta", "daily_campaign_spend"])]:
        summary = AssetSummary()
        for partition_key in keys:
            manifest = store.read_manifest(asset_key, partition_key)
            if manifest is not None:
                summary.add(manifest.records, RequestStats.from_dict(manifest.request_stats))
        stats = summary.stats
        print(
            f"  {asset_key.to_user_string():<27}{summary.partitions:>11}{summary.records:>9}"
            f"{stats.logical_requests:>9}{stats.retries:>8}{stats.throttle_wait_seconds:>11.1f}"
            f"{stats.accuracy:>9.1%}",
            file=out,
        )
    example = store.location(dg.AssetKey(["meta", "insights"]), keys[-1]).manifest_uri
    print(
        f"\nData: one folder per asset and partition in gs://{store.bucket_name}/, e.g.\n"
        f"  {example}\n"
        f"(GCS emulator at {gcs_url}, stopped on exit)\n"
        f"Dagster instance: {os.environ['DAGSTER_HOME']}\n"
        f"Finished in {time.monotonic() - started:.0f}s, {failed} failed partition run(s).",
        file=out,
    )
    return 1 if failed else 0
