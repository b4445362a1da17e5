"""Checkpoint encoding: round trip, and no credential ever stored."""

from __future__ import annotations

import dagster as dg
import pytest

from meta_pipeline.io_managers.checkpoints import (
    CHECKPOINT_KEY,
    Checkpoint,
    UnsafeResumeState,
)
from meta_pipeline.io_managers.manifest import StoredObject

ASSET = dg.AssetKey(["meta", "insights"])


def _checkpoint(resume_state: dict | None) -> Checkpoint:
    return Checkpoint(
        attempt_id="abc",
        root_run_id="root",
        run_id="run",
        fingerprint="fp",
        resume_state=resume_state,
        objects=(StoredObject("attempt=abc/part-00000.jsonl.gz", 10, 99, "crc", "md5"),),
        pages=2,
        request_stats={"logical_requests": 2, "succeeded_requests": 2},
    )


def test_checkpoint_round_trips_through_observation_metadata() -> None:
    checkpoint = _checkpoint({"after": "QVFIUk", "report_run_id": "123456"})
    observation = checkpoint.to_observation(ASSET, "act_1|2026-11-01")
    assert observation.partition == "act_1|2026-11-01"
    assert observation.metadata["checkpoint_records"].value == 10
    assert observation.metadata["report_run_id"].value == "123456"
    stored = observation.metadata[CHECKPOINT_KEY].value
    assert Checkpoint.from_dict(stored) == checkpoint


@pytest.mark.parametrize(
    "state",
    [
        {"next": "https://graph.facebook.com/v23.0/act_1/insights?access_token=EAAB&after=x"},
        {"params": {"appsecret_proof": "deadbeef"}},
    ],
)
def test_a_resume_state_carrying_a_credential_is_never_stored(state: dict) -> None:
    with pytest.raises(UnsafeResumeState) as info:
        _checkpoint(state).to_observation(ASSET, "act_1|2026-11-01")
    assert "EAAB" not in str(info.value) and "deadbeef" not in str(info.value)
