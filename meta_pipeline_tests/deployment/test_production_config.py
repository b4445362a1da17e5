"""deploy/dagster.yaml loaded into a real instance on a real PostgreSQL server; Helm values agree."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator

from meta_pipeline_tests.assets.conftest import DAGSTER_CLI as CLI
from meta_pipeline_tests.deployment.conftest import (
    DEPLOY,
    ROOT,
    PostgresServer,
    free_port,
    write_production_home,
)

ACCOUNT_LIMIT = {
    "key": "meta_pipeline/account",
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 1,
}


def _limits(instance: dg.DagsterInstance) -> dict[str, Any]:
    config = instance.get_concurrency_config()
    queue = config.run_queue_config
    assert queue is not None, "runs are queued"
    return {
        "coordinator": type(instance.run_coordinator).__name__,
        "max_concurrent_runs": queue.max_concurrent_runs,
        "tag_concurrency_limits": list(queue.tag_concurrency_limits),
        "pool_granularity": config.pool_config.pool_granularity,
        "pool_default_limit": config.pool_config.default_pool_limit,
        "run_retries": instance.run_retries_enabled,
        "max_retries": instance.run_retries_max_retries,
        "retry_step_failures": instance.run_retries_retry_on_asset_or_op_failure,
        "queue_blocks_on_pools": queue.should_block_op_concurrency_limited_runs,
    }


@pytest.mark.timeout(120)
def test_production_instance_stores_in_postgres_with_the_local_queue_limits_and_retries(
    tmp_path: Path,
    postgres: PostgresServer,
    pg_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in postgres.env(pg_database).items():
        monkeypatch.setenv(name, value)
    home = write_production_home(tmp_path / "prod")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        production = _limits(instance)
        assert production["coordinator"] == "AccountTaggingRunCoordinator"
        assert production["tag_concurrency_limits"] == [ACCOUNT_LIMIT]
        assert production["max_concurrent_runs"] == 8
        assert production["pool_default_limit"] == 4
        assert production["run_retries"] and production["max_retries"] == 2
        assert production["retry_step_failures"] is False
        # Pools are enforced per step; the queue does not hold runs back on them (see the
        # comment in deploy/dagster.yaml and the parallel-accounts assertion of the daemon test).
        assert production.pop("queue_blocks_on_pools") is False
        assert instance.run_monitoring_enabled
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.dequeue_use_threads and coordinator.dequeue_num_workers == 4
        assert instance.get_settings("telemetry") == {"enabled": False}

        # What the instance writes is really in that database, read back over a new connection.
        instance.add_dynamic_partitions("meta_ad_accounts", ["act_101", "act_202"])
        run = instance.create_run_for_job(
            dg.GraphDefinition("noop", node_defs=[]).to_job(), tags={"probe": "deploy"}
        )
    conn = postgres.connect(pg_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id FROM runs")
            assert [row[0] for row in cur.fetchall()] == [run.run_id]
            cur.execute(
                "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
                ("meta_ad_accounts",),
            )
            assert sorted(row[0] for row in cur.fetchall()) == ["act_101", "act_202"]
    finally:
        conn.close()

    # The same coordinator, limits and retries as the local instance (only storage differs).
    local_home = tmp_path / "local"
    local_home.mkdir()
    (local_home / "dagster.yaml").write_bytes((ROOT / "dagster.yaml").read_bytes())
    with dg.DagsterInstance.from_config(str(local_home)) as local:
        assert type(local.run_storage).__name__ == "SqliteRunStorage"
        local_limits = _limits(local)
        local_limits.pop("queue_blocks_on_pools")
        assert local_limits == production


@pytest.mark.timeout(120)
def test_a_missing_database_setting_is_named(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in postgres.env(pg_database).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    home = write_production_home(tmp_path / "prod")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        dg.DagsterInstance.from_config(str(home))


@pytest.mark.timeout(120)
def test_a_wrong_password_is_refused_by_the_server_and_never_logged(
    tmp_path: Path,
    postgres: PostgresServer,
    pg_database: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in postgres.env(pg_database).items():
        monkeypatch.setenv(name, value)
    wrong = "wrong-pw-5e2d81"
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", wrong)
    home = write_production_home(tmp_path / "prod")
    with pytest.raises(Exception) as raised, dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    chain: list[BaseException] = []
    error: BaseException | None = raised.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or error.__context__
    messages = "\n".join(str(e) for e in chain)
    assert "password authentication failed" in messages
    assert wrong not in messages
    assert wrong not in caplog.text


def _helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_helm_values_carry_the_production_instance_settings() -> None:
    values = _helm_values()
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    runs = values["concurrency"]["runs"]
    assert values["concurrency"]["enabled"] is True
    assert runs["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    pools = values["concurrency"]["pools"]
    assert pools["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert pools["granularity"] == instance["concurrency"]["pools"]["granularity"]

    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "CustomRunCoordinator"
    custom = coordinator["config"]["customRunCoordinator"]
    assert (custom["module"], custom["class"]) == (
        instance["run_coordinator"]["module"],
        instance["run_coordinator"]["class"],
    )
    # The same queue settings as deploy/dagster.yaml, key for key.
    assert custom["config"] == instance["run_coordinator"]["config"]
    assert custom["config"]["block_op_concurrency_limited_runs"]["enabled"] is False
    retries = instance["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    assert daemon["runMonitoring"]["enabled"] is instance["run_monitoring"]["enabled"]
    assert values["postgresql"]["enabled"] is False
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_helm_user_code_deployment_serves_the_code_location_with_secrets_from_kubernetes() -> None:
    values = _helm_values()
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "meta_pipeline.definitions"]
    secrets_refs = [{"name": "meta-pipeline-secrets"}]
    assert deployment["envSecrets"] == secrets_refs
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == secrets_refs
    text = (DEPLOY / "helm" / "values.yaml").read_text()
    # Secrets are referenced, never written into the values.
    for secret in ("META_ACCESS_TOKEN", "META_APP_SECRET"):
        assert secret not in deployment.get("env", {})
        assert f"{secret}:" not in text
    assert values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"]


@pytest.mark.timeout(180)
def test_helm_user_code_command_serves_the_jobs_over_grpc(tmp_path: Path) -> None:
    """The user-code container's command, as the chart builds it from dagsterApiGrpcArgs."""
    [deployment] = _helm_values()["dagster-user-deployments"]["deployments"]
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "META_ACCESS_TOKEN": "grpc-test-token",  # read only when a run starts, never at load
        "GCS_BUCKET": "unused-bucket",
    }
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [CLI, "api", "grpc", *deployment["dagsterApiGrpcArgs"], "-h", "127.0.0.1"]
    log = tmp_path / "grpc.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "-p", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        while True:
            health = subprocess.run(
                [CLI, "api", "grpc-health-check", "-p", str(port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if health.returncode == 0:
                break
            assert server.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the code server never became healthy"
            time.sleep(1)
        listed = subprocess.run(
            [CLI, "job", "list", "--grpc-port", str(port), "--grpc-host", "127.0.0.1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
        for job in ("meta_extract", "meta_objects_refresh", "meta_insights_refresh"):
            assert job in listed.stdout
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
