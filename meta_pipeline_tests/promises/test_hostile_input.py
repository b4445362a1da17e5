"""Row 25 and "clear failure" end to end: hostile ids and malformed settings.

Account ids and partition keys with ``../``, ``|``, newlines, ``#`` and unicode
look-alikes, arriving from configuration (META_AD_ACCOUNT_IDS), the command line
(``meta-pipeline accounts add``, ``dagster asset materialize --partition``) and an API
response (``/me/adaccounts``), are rejected with a clear error before any URL or object
key is built: the simulator sees no request naming them, the bucket stays empty.
Malformed settings fail with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meta_pipeline.accounts import add_accounts, configured_account_ids
from meta_pipeline.partitions import (
    ACCOUNTS_PARTITIONS_NAME,
    InvalidPartitionKey,
    parse_partition_key,
)
from meta_pipeline.resources import validation
from meta_pipeline.resources.errors import MetaInputError
from meta_pipeline.simulator import SimulatorConfig
from meta_pipeline_tests.assets.conftest import ROOT, Pipeline, make_pipeline

TOKEN = "hostile-token-1b9e77"
META_PIPELINE = str(Path(sys.executable).parent / "meta-pipeline")
DAY = (dt.date.today() - dt.timedelta(days=3)).isoformat()

# Every shape is checked in process against the real entry points (cheap); each door is
# also crossed end to end by two of them (every CLI call loads Dagster: seconds each).
HOSTILE = [
    "act_1/../../x",  # path traversal into the Graph path and the object key
    "../act_1",
    "act_1|2026-01-01",  # the partition key separator
    "act_1\nX-Injected: 1",  # a newline: header / log injection
    "act_1#fragment",  # cuts the URL
    "act_1?fields=x",  # query injection
    "act_\uff11\uff12\uff13",  # fullwidth digits (str.isdigit() says yes)
    "act_\u0661\u0662\u0663",  # Arabic-Indic digits
    "\u0430ct_123",  # Cyrillic a
    "act_123 ",  # a trailing space inside a key
]
FROM_COMMAND_LINE = ["act_1/../../x", "act_1\nX-Injected: 1"]
FROM_SETTING = ["act_1|2026-01-01", "\u0430ct_123"]


@pytest.fixture
def pipeline(tmp_path: Path, promises_gcs_url: str) -> Iterator[Pipeline]:
    config = SimulatorConfig(
        seed=3, accounts=2, scale=0.2, profile="clean", token=TOKEN, today=dt.date.today()
    )
    yield from make_pipeline(tmp_path, promises_gcs_url, config)


def _cli(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [META_PIPELINE, *args],
        env={**pipeline.env, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _nothing_reached_the_outside(pipeline: Pipeline, hostile: str = "") -> None:
    stats = pipeline.sim.stats()
    assert stats["requests_total"] == 0, stats["by_path"]
    assert list(pipeline.store.client.list_blobs(pipeline.store.bucket_name)) == []


def _registered(pipeline: Pipeline) -> set[str]:
    return set(pipeline.instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME))


def test_every_hostile_shape_is_refused_by_every_entry_point(pipeline: Pipeline) -> None:
    """Registration, the setting, partition keys and object keys: all refuse, all say why."""
    for hostile in HOSTILE:
        with pytest.raises(InvalidPartitionKey, match="act_<digits>"):
            add_accounts(pipeline.instance, ["act_42", hostile])
        with pytest.raises(InvalidPartitionKey, match="act_<digits>"):
            parse_partition_key(f"{hostile}|{DAY}")
        with pytest.raises(InvalidPartitionKey):
            pipeline.store.location(["meta", "insights"], f"{hostile}|{DAY}")
        with pytest.raises(MetaInputError, match="act_<digits>"):
            validation.account_id(hostile)  # what every Graph path is built from
        if hostile.strip() == hostile:  # list entries are trimmed: "act_1 , act_2" is fine
            os.environ["META_AD_ACCOUNT_IDS"] = f"act_7,{hostile}"
            try:
                with pytest.raises(InvalidPartitionKey, match="META_AD_ACCOUNT_IDS"):
                    configured_account_ids()
            finally:
                del os.environ["META_AD_ACCOUNT_IDS"]
    assert _registered(pipeline) == set(pipeline.accounts)
    _nothing_reached_the_outside(pipeline)


def test_hostile_ids_on_the_command_line_are_rejected_and_nothing_is_added(
    pipeline: Pipeline,
) -> None:
    before = _registered(pipeline)
    for hostile in FROM_COMMAND_LINE:
        result = _cli(pipeline, "accounts", "add", "act_42", hostile)
        assert result.returncode != 0, hostile
        assert "act_<digits>" in result.stderr, (hostile, result.stderr)
        assert "Traceback" not in result.stderr
        assert _registered(pipeline) == before, "all or nothing: act_42 was not added either"
    _nothing_reached_the_outside(pipeline)


def test_hostile_ids_in_the_setting_are_rejected_naming_the_setting(pipeline: Pipeline) -> None:
    before = _registered(pipeline)
    # (Entries of the comma-separated list are trimmed: "act_1 , act_2" is fine.)
    for hostile in FROM_SETTING:
        result = _cli(pipeline, "accounts", "add", META_AD_ACCOUNT_IDS=f"act_7,{hostile}")
        assert result.returncode != 0, hostile
        assert "META_AD_ACCOUNT_IDS" in result.stderr, (hostile, result.stderr)
        assert _registered(pipeline) == before
    _nothing_reached_the_outside(pipeline)


def test_a_hostile_id_served_by_the_api_is_rejected_by_discover(pipeline: Pipeline) -> None:
    sim = pipeline.sim
    hostile = dataclasses.replace(sim.world.accounts[0], id="act_1/../../x", index=99)
    sim.world.accounts.append(hostile)
    before = _registered(pipeline)
    result = _cli(pipeline, "accounts", "discover")
    assert result.returncode != 0
    assert "/me/adaccounts" in result.stderr and "act_<digits>" in result.stderr, result.stderr
    assert _registered(pipeline) == before
    # Only the listing itself was requested: nothing was built from the hostile id.
    by_path = sim.stats()["by_path"]
    assert set(by_path) == {"/{version}/me/adaccounts"}, by_path
    assert list(pipeline.store.client.list_blobs(pipeline.store.bucket_name)) == []


@pytest.mark.timeout(600)
def test_hostile_partition_keys_fail_every_asset_before_any_request_or_object(
    pipeline: Pipeline,
) -> None:
    # Registered behind the product's back (Dagster itself accepts these as dynamic
    # partitions, e.g. added from the UI): the assets must still refuse them.
    hostile = ["act_1/../../x", "act_\uff11\uff12\uff13"]
    pipeline.instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, hostile)
    for account in hostile:
        pipeline.sim.reset_stats()
        result = pipeline.materialize(f"{account}|{DAY}")
        output = result.stdout + result.stderr
        assert result.returncode != 0, account
        assert "InvalidPartitionKey" in output and "act_<digits>" in output, output[-3000:]
        _nothing_reached_the_outside(pipeline)


# One per place a setting is read: definitions load, Dagster resource setup, the client.
# (resources/test_settings.py covers the client's settings one by one.)
MALFORMED_SETTINGS = [
    ("GCS_RECORDS_PER_OBJECT", "1e3"),
    ("META_START_DATE", "2026-13-01"),
    ("META_ACCESS_TOKEN", "has a space"),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("name", "value"), MALFORMED_SETTINGS)
def test_a_malformed_setting_fails_the_run_naming_the_setting(
    pipeline: Pipeline, name: str, value: str
) -> None:
    account = pipeline.accounts[0]
    pipeline.env[name] = value
    result = pipeline.materialize(f"{account}|{DAY}", "meta/ad_accounts")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert name in output, output[-3000:]
    if name == "META_ACCESS_TOKEN":
        assert value not in output, "a malformed token is still a secret"
    _nothing_reached_the_outside(pipeline)
