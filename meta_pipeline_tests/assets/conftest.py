"""A pipeline wired to the simulator and the GCS emulator over real HTTP, and a real instance."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from google.cloud import storage

from meta_pipeline.gcs_emulator import running_gcs_emulator
from meta_pipeline.io_managers.store import PartitionStore
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME
from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

TOKEN = "e2e-secret-token-7f3a9c"
_buckets = itertools.count()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def gcs_url() -> Iterator[str]:
    with running_gcs_emulator() as url:
        yield url


@dataclass
class Pipeline:
    """Everything a test needs to run the product and compare with the source."""

    sim: Simulator
    env: dict[str, str]
    store: PartitionStore
    instance: dg.DagsterInstance
    home: Path

    @property
    def accounts(self) -> list[str]:
        return [a.id for a in self.sim.world.accounts]

    def dagster(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run the real ``dagster`` CLI in a subprocess with the pipeline's environment."""
        return subprocess.run(
            [DAGSTER_CLI, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def materialize(self, partition: str, select: str = "*") -> subprocess.CompletedProcess[str]:
        return self.dagster(*_materialize_args(partition, select))

    def popen_materialize(self, partition: str, select: str, log: Path) -> subprocess.Popen[str]:
        """Start a materialization; its output goes to ``log`` for the failure message."""
        with log.open("w") as out:
            return subprocess.Popen(
                [DAGSTER_CLI, *_materialize_args(partition, select)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group, so a test can kill the tree
            )


DAGSTER_CLI = str(Path(sys.executable).parent / "dagster")


def _materialize_args(partition: str, select: str) -> list[str]:
    return materialize_args(select, "--partition", partition)


def materialize_args(select: str, target_flag: str, target: str) -> list[str]:
    """``dagster asset materialize`` of ``select`` for ``--partition`` or ``--partition-range``."""
    return [
        "asset",
        "materialize",
        "-m",
        "meta_pipeline.definitions",
        "--select",
        select,
        target_flag,
        target,
    ]


def make_pipeline(
    tmp_path: Path,
    gcs_url: str,
    config: SimulatorConfig,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Pipeline]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    bucket = f"e2e-{os.getpid()}-{next(_buckets)}"
    with run_simulator(config, host="127.0.0.1", port=0) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "META_ACCESS_TOKEN": config.token,
            "META_GRAPH_URL": sim.base_url,
            "GCS_BUCKET": bucket,
            "GCS_PREFIX": "",
            "GCS_PROJECT": "meta-e2e",
            "STORAGE_EMULATOR_HOST": gcs_url,
            **(extra_env or {}),
        }
        previous = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            client = storage.Client(project="meta-e2e")
            client.create_bucket(bucket)
            store = PartitionStore(client, bucket, "")
            with dg.DagsterInstance.get() as instance:
                instance.add_dynamic_partitions(
                    ACCOUNTS_PARTITIONS_NAME, [a.id for a in sim.world.accounts]
                )
                yield Pipeline(sim=sim, env=env, store=store, instance=instance, home=home)
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def pipeline(tmp_path: Path, gcs_url: str) -> Iterator[Pipeline]:
    config = SimulatorConfig(
        seed=11, accounts=3, scale=0.5, profile="clean", token=TOKEN, today=dt.date.today()
    )
    yield from make_pipeline(tmp_path, gcs_url, config)


def expected_object_ids(sim: Simulator, account_id: str, edge: str, day: dt.date) -> set[str]:
    """Objects whose updated_time (written in the account's own offset) falls on ``day``."""
    return {
        str(o["id"])
        for o in sim.world.objects(account_id, edge)
        if str(o["updated_time"])[:10] == day.isoformat()
    }


def expected_insight_keys(sim: Simulator, account_id: str, day: dt.date) -> set[tuple[str, str]]:
    rows = sim.world.insights(account_id, since=day, until=day, level="ad")
    return {(str(r["ad_id"]), str(r["date_start"])) for r in rows}
