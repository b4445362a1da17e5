"""The client as a real Dagster resource: EnvVar secrets, session set up per run."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from meta_pipeline.resources.errors import MetaConfigError
from meta_pipeline.resources.meta_api import MetaAdsClient

from .conftest import TOKEN, first_account


def test_resource_reads_the_token_from_env_and_talks_to_the_simulator(
    fresh_sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_ACCESS_TOKEN", TOKEN)
    account = first_account(fresh_sim)

    @dg.asset
    def account_info(meta: MetaAdsClient) -> dict:
        return meta.get_account(account, ["id", "name", "timezone_name"])

    result = dg.materialize(
        [account_info],
        resources={
            "meta": MetaAdsClient(
                access_token=dg.EnvVar("META_ACCESS_TOKEN"), graph_url=fresh_sim.base_url
            )
        },
    )
    assert result.success
    assert result.output_for_node("account_info")["id"] == account


def test_empty_token_fails_the_run_with_one_line_naming_the_setting(
    fresh_sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_ACCESS_TOKEN", "")

    @dg.asset
    def needs_meta(meta: MetaAdsClient) -> None:
        meta.get("me")

    with pytest.raises(dg.DagsterResourceFunctionError) as caught:
        dg.materialize(
            [needs_meta],
            resources={
                "meta": MetaAdsClient(
                    access_token=dg.EnvVar("META_ACCESS_TOKEN"), graph_url=fresh_sim.base_url
                )
            },
        )
    cause = caught.value.__cause__
    assert isinstance(cause, MetaConfigError)
    assert str(cause) == "META_ACCESS_TOKEN (access_token) is not set"
