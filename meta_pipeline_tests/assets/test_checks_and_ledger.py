"""Asset checks that fail when they should, the failed-request ledger and its replay,
re-materialization of a committed partition, and the accounts command."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from meta_pipeline.assets import checks
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.simulator import SimulatorConfig
from meta_pipeline_tests.assets.conftest import (
    ROOT,
    TOKEN,
    Pipeline,
    expected_insight_keys,
    expected_object_ids,
    make_pipeline,
)

INSIGHTS = dg.AssetKey(["meta", "insights"])
CAMPAIGNS = dg.AssetKey(["meta", "campaigns"])
DAY = dt.date.today() - dt.timedelta(days=4)
META_PIPELINE = str(Path(sys.executable).parent / "meta-pipeline")


def _commit(pipeline: Pipeline, key: dg.AssetKey, partition: str, records: list[dict], **kw):  # type: ignore[no-untyped-def]
    return pipeline.store.commit_partition(
        key,
        partition,
        records,
        api_version="v25.0",
        fingerprint="test",
        primary_key=kw.pop("primary_key", ("id",)),
        **kw,
    )


def _results(
    pipeline: Pipeline, key: dg.AssetKey, partition: str
) -> dict[str, dg.AssetCheckResult]:
    results = checks.common_results(pipeline.store, key, partition, 0.99, completeness=True)
    return {r.check_name: r for r in results if r.check_name}


def test_checks_fail_on_a_duplicated_incomplete_inaccurate_partition(pipeline: Pipeline) -> None:
    account = pipeline.accounts[0]
    partition = f"{account}|{DAY.isoformat()}"
    campaigns = pipeline.sim.world.objects(account, "ads")[:5]
    assert len(campaigns) == 5
    good = _commit(
        pipeline, CAMPAIGNS, partition, campaigns,
        request_stats={"logical_requests": 2, "succeeded_requests": 2},
    )  # fmt: skip
    assert good.records == 5
    # The committed manifest has no API total here: completeness is not applicable, the rest pass.
    assert all(r.passed for r in _results(pipeline, CAMPAIGNS, partition).values())

    location = pipeline.store.location(CAMPAIGNS, partition)
    duplicated = [*campaigns, campaigns[0]]
    _commit(
        pipeline, CAMPAIGNS, partition, duplicated,
        request_stats={"logical_requests": 100, "succeeded_requests": 97},
    )  # fmt: skip
    manifest = pipeline.store.read_manifest_at(location)
    assert manifest is not None
    results = _results(pipeline, CAMPAIGNS, partition)
    assert not results["unique_primary_keys"].passed
    assert results["unique_primary_keys"].metadata["duplicates"] == dg.MetadataValue.int(1)
    assert not results["accuracy"].passed  # 97 % against a 99 % threshold
    incomplete = dg.AssetCheckResult  # the completeness result for a known API total:
    short = checks.completeness_result(CAMPAIGNS, _with_total(manifest, 9))
    assert isinstance(short, incomplete) and not short.passed
    assert short.severity == dg.AssetCheckSeverity.ERROR
    assert checks.completeness_result(CAMPAIGNS, _with_total(manifest, 6)).passed


def _with_total(manifest, total: int):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(manifest, api_total_count=total)


def test_reconciliation_fails_when_a_row_is_missing(pipeline: Pipeline) -> None:
    account = pipeline.accounts[0]
    rows = pipeline.sim.world.insights(account, since=DAY, until=DAY, level="ad")
    assert len(rows) > 2
    with MetaAdsClient(access_token=TOKEN, graph_url=pipeline.sim.base_url).open() as client:
        whole = checks.reconciliation_result(INSIGHTS, rows, client, account, DAY, 0.001)
        partial = checks.reconciliation_result(INSIGHTS, rows[1:], client, account, DAY, 0.001)
    assert whole.passed, whole.metadata
    assert not partial.passed


@pytest.fixture
def failing_reports(tmp_path: Path, gcs_url: str) -> Iterator[Pipeline]:
    config = SimulatorConfig(
        seed=3, accounts=1, scale=0.5, profile="clean", token=TOKEN, today=dt.date.today()
    )
    yield from make_pipeline(tmp_path, gcs_url, config, {"META_ASYNC_POLL_SECONDS": "0.05"})


@pytest.mark.timeout(600)
def test_ledger_keeps_failed_slices_and_replay_folds_them_in_once(
    failing_reports: Pipeline,
) -> None:
    pipeline = failing_reports
    [account] = pipeline.accounts
    partition = f"{account}|{DAY.isoformat()}"
    # Every report run fails: the day's job, its retry, then each campaign and ad set slice.
    pipeline.sim.inject("job_failed", times=10_000)
    first = pipeline.materialize(partition, "meta/insights")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    manifest = pipeline.store.read_manifest(INSIGHTS, partition)
    assert manifest is not None and manifest.ledger_entries > 0
    ledger = pipeline.store.read_ledger(INSIGHTS, partition)
    assert {e.kind for e in ledger} == {"insights_slice"}
    assert all(TOKEN not in str(e.to_dict()) for e in ledger)
    expected = expected_insight_keys(pipeline.sim, account, DAY)
    assert len(manifest_keys(pipeline, partition)) < len(expected)

    pipeline.sim.clear_faults()
    pipeline.sim.reset_stats()
    replay = subprocess.run(
        [META_PIPELINE, "retry-failed"], env=pipeline.env, cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    reissued = pipeline.sim.stats()["requests_total"]
    assert reissued > 0
    after = pipeline.store.read_manifest(INSIGHTS, partition)
    assert after is not None and after.ledger_entries == 0
    keys = manifest_keys(pipeline, partition)
    assert len(keys) == len(set(keys)) and set(keys) == expected

    pipeline.sim.reset_stats()
    again = subprocess.run(
        [META_PIPELINE, "retry-failed"], env=pipeline.env, cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0
    assert pipeline.sim.stats()["requests_total"] == 0, "nothing left to re-issue"
    unchanged = pipeline.store.read_manifest(INSIGHTS, partition)
    assert unchanged is not None and unchanged.attempt_id == after.attempt_id


def manifest_keys(pipeline: Pipeline, partition: str) -> list[tuple[str, str]]:
    return [
        (str(r["ad_id"]), str(r["date_start"]))
        for r in pipeline.store.iter_records(INSIGHTS, partition)
    ]


@pytest.mark.timeout(600)
def test_rematerializing_a_committed_partition_replaces_it_atomically(pipeline: Pipeline) -> None:
    account = pipeline.accounts[1]
    partition = f"{account}|{DAY.isoformat()}"
    select = "meta/campaigns,meta/ads"
    assert pipeline.materialize(partition, select).returncode == 0
    location = pipeline.store.location(["meta", "ads"], partition)
    first = pipeline.store.read_manifest_at(location)
    assert first is not None
    assert pipeline.materialize(partition, select).returncode == 0
    second = pipeline.store.read_manifest_at(location)
    assert second is not None
    assert second.attempt_id != first.attempt_id and not second.resumed
    ids = [str(r["id"]) for r in pipeline.store.iter_records(["meta", "ads"], partition)]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected_object_ids(pipeline.sim, account, "ads", DAY)
    names = pipeline.store.list_object_names(location)
    assert not [n for n in names if f"attempt={first.attempt_id}" in n], "old attempt cleaned"


def test_accounts_command_adds_lists_discovers_and_rejects_hostile_ids(pipeline: Pipeline) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [META_PIPELINE, "accounts", *args], env=pipeline.env, cwd=ROOT,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    added = run("add", "act_123", "456")
    assert added.returncode == 0, added.stderr
    assert "act_123" in added.stdout and "act_456" in added.stdout
    hostile = run("add", "act_9", "act_1/../x")
    assert hostile.returncode == 2
    assert "act_1/../x" in hostile.stderr and "act_<digits>" in hostile.stderr
    listed = run("list").stdout.split()
    assert "act_9" not in listed, "nothing is added when one id is bad"
    assert {"act_123", "act_456", *pipeline.accounts} == set(listed)

    pipeline.instance.delete_dynamic_partition("meta_ad_accounts", pipeline.accounts[0])
    discovered = run("discover")
    assert discovered.returncode == 0, discovered.stderr
    assert pipeline.accounts[0] in run("list").stdout.split()
    assert TOKEN not in discovered.stdout + discovered.stderr
