"""Permanent Meta errors fail the step once, clearly, and are not retried by the RetryPolicy."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from meta_pipeline.definitions import build_definitions
from meta_pipeline.jobs import extract_job
from meta_pipeline_tests.assets.conftest import TOKEN, Pipeline, expected_insight_keys


def test_expired_token_fails_once_with_code_and_no_token(pipeline: Pipeline) -> None:
    wrong_token = "wrong-" + TOKEN[::-1]
    os.environ["META_ACCESS_TOKEN"] = wrong_token  # the fixture restores the environment
    job = build_definitions().resolve_job_def(extract_job.name)
    assert job.op_retry_policy is not None and job.op_retry_policy.max_retries > 0
    day = dt.date.today() - dt.timedelta(days=2)
    partition = f"{pipeline.accounts[0]}|{day.isoformat()}"
    pipeline.sim.reset_stats()

    result = job.execute_in_process(
        partition_key=partition,
        instance=pipeline.instance,
        raise_on_error=False,
        op_selection=["meta__campaigns"],
    )

    assert not result.success
    events = pipeline.instance.all_logs(result.run_id)
    kinds = [e.dagster_event.event_type_value for e in events if e.dagster_event]
    assert "STEP_UP_FOR_RETRY" not in kinds, "a permanent error must not be retried"
    [failure] = [e for e in events if e.dagster_event and e.dagster_event.is_step_failure]
    error = failure.dagster_event.step_failure_data.error  # type: ignore[union-attr]
    assert error is not None
    text = error.to_string()
    assert "190" in text and "access token" in text.lower()
    assert wrong_token not in text and TOKEN not in text
    # One logical request, no retries: Meta is not hammered with a token it refused.
    assert pipeline.sim.stats()["requests_total"] == 1
    assert pipeline.store.read_manifest(["meta", "campaigns"], partition) is None


def test_cursor_refused_mid_stream_restarts_the_partition_cleanly(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_PAGE_SIZE", "5")
    monkeypatch.setenv("GCS_RECORDS_PER_OBJECT", "5")
    monkeypatch.setenv("META_ASYNC_POLL_SECONDS", "0.05")
    account = pipeline.accounts[0]
    day = dt.date.today() - dt.timedelta(days=2)
    partition = f"{account}|{day.isoformat()}"
    expected = expected_insight_keys(pipeline.sim, account, day)
    assert len(expected) > 10, "several pages of 5"
    # The second page's request is refused: its cursor was issued a moment ago.
    pipeline.sim.inject("expired_cursor", times=1)
    job = build_definitions().resolve_job_def(extract_job.name)

    result = job.execute_in_process(
        partition_key=partition,
        instance=pipeline.instance,
        raise_on_error=False,
        op_selection=["meta__insights"],
    )

    assert result.success
    messages = [e.user_message for e in pipeline.instance.all_logs(result.run_id)]
    assert any("cursor refused mid-stream" in m for m in messages)
    rows = list(pipeline.store.iter_records(["meta", "insights"], partition))
    keys = [(str(r["ad_id"]), str(r["date_start"])) for r in rows]
    assert len(keys) == len(set(keys)) and set(keys) == expected
    location = pipeline.store.location(["meta", "insights"], partition)
    manifest = pipeline.store.read_manifest_at(location)
    assert manifest is not None
    listed = {location.object_name(o.path) for o in manifest.objects}
    stored = {n for n in pipeline.store.list_object_names(location) if n.endswith(".jsonl.gz")}
    assert stored == listed, "objects of the discarded start are gone"
