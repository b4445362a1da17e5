"""Sensors against the Graph API simulator over real HTTP, on a real SQLite instance."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from meta_pipeline.definitions import defs
from meta_pipeline.partitions import ACCOUNTS_PARTITIONS_NAME, InvalidPartitionKey
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline.sensors import (
    ACTIVITIES_OVERLAP,
    EVENT_TIME_FORMAT,
    NEW_ACCOUNT_RECENT_DAYS,
    activities_cursor,
    changed_objects_sensor,
    load_activities_cursor,
    new_ad_accounts_sensor,
)
from meta_pipeline.simulator import Simulator, SimulatorConfig, run_simulator

TOKEN = "sensor-test-token-4c1d"
ACCOUNT_TAG = "dagster/partition/account"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=5, accounts=3, scale=0.3, token=TOKEN, today=dt.date.today())
    with run_simulator(config) as simulator:
        yield simulator


@pytest.fixture
def past_sim() -> Iterator[Simulator]:
    """A world anchored ten days back: every activity it logs is already in the past."""
    today = dt.date.today() - dt.timedelta(days=10)
    config = SimulatorConfig(seed=5, accounts=3, scale=0.3, token=TOKEN, today=today)
    with run_simulator(config) as simulator:
        yield simulator


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # A temporary DAGSTER_HOME: the instance has a ref, as under the daemon.
    with dg.instance_for_test() as temporary:
        yield temporary


@pytest.fixture(autouse=True)
def _no_configured_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("META_AD_ACCOUNT_IDS", raising=False)


def client_for(sim: Simulator) -> MetaAdsClient:
    return MetaAdsClient(access_token=TOKEN, graph_url=sim.base_url, max_attempts=2)


def evaluate(
    sensor: dg.SensorDefinition, sim: Simulator, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"meta": client_for(sim)}, definitions=defs
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def resolved_requests(
    sensor: dg.SensorDefinition, sim: Simulator, instance: dg.DagsterInstance, cursor: str | None
) -> list[dg.RunRequest]:
    """What the daemon would launch: run requests with their partition tags resolved."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources={"meta": client_for(sim)},
        definitions=defs,
    ) as context:
        return list(sensor.evaluate_tick(context).run_requests or [])


def apply_partitions(instance: dg.DagsterInstance, result: dg.SensorResult) -> list[str]:
    """Do what the sensor daemon does with the result's dynamic partition requests."""
    added: list[str] = []
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        assert request.partitions_def_name == ACCOUNTS_PARTITIONS_NAME
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        added.extend(request.partition_keys)
    return added


def expected_recent_keys(sim: Simulator, account_ids: list[str]) -> set[str]:
    """Each account's last local days, as far as they are partitions (up to UTC yesterday)."""
    now = dt.datetime.now(dt.UTC)
    last_partition = now.date() - dt.timedelta(days=1)
    keys = set()
    for account_id in account_ids:
        zone = ZoneInfo(sim.world.account(account_id).timezone_name)
        today = now.astimezone(zone).date()
        for age in range(1, NEW_ACCOUNT_RECENT_DAYS + 1):
            day = today - dt.timedelta(days=age)
            if day <= last_partition:
                keys.add(f"{account_id}|{day.isoformat()}")
    return keys


# ---------------------------------------------------------------- new ad accounts


def test_new_accounts_are_added_with_their_recent_days_and_a_second_evaluation_skips(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    late = sim.world.accounts.pop()  # not yet visible to the token
    first = [a.id for a in sim.world.accounts]

    result = evaluate(new_ad_accounts_sensor, sim, instance, None)
    assert isinstance(result, dg.SensorResult)
    assert apply_partitions(instance, result) == sorted(first)
    requested = {str(r.partition_key) for r in result.run_requests or []}
    assert requested == expected_recent_keys(sim, first)
    assert len(requested) >= 2 * len(first)  # at least two complete local days each
    run_keys = [r.run_key for r in result.run_requests or []]
    assert len(set(run_keys)) == len(run_keys)
    assert result.cursor

    again = evaluate(new_ad_accounts_sensor, sim, instance, result.cursor)
    assert isinstance(again, dg.SkipReason)
    assert "No new ad accounts" in (again.skip_message or "")

    sim.world.accounts.append(late)
    later = evaluate(new_ad_accounts_sensor, sim, instance, result.cursor)
    assert isinstance(later, dg.SensorResult)
    assert apply_partitions(instance, later) == [late.id]
    assert {str(r.partition_key) for r in later.run_requests or []} == expected_recent_keys(
        sim, [late.id]
    )
    assert later.cursor != result.cursor
    assert sorted(instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME)) == sorted(
        a.id for a in sim.world.accounts
    )
    assert isinstance(evaluate(new_ad_accounts_sensor, sim, instance, later.cursor), dg.SkipReason)


def test_new_account_runs_resolve_to_the_extract_job_with_the_account_tag(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    # The daemon adds the partitions before resolving the runs of the same tick.
    requests = resolved_requests(new_ad_accounts_sensor, sim, instance, None)
    assert requests
    for request in requests:
        account, _, _ = str(request.partition_key).partition("|")
        # The run coordinator derives the per-account limit's tag from it.
        assert request.tags[ACCOUNT_TAG] == account
        assert request.tags["meta/trigger"] == "new_ad_account"


def test_configured_account_ids_are_used_instead_of_discovery(
    sim: Simulator, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = sim.world.accounts[1].id
    monkeypatch.setenv("META_AD_ACCOUNT_IDS", chosen.removeprefix("act_"))
    result = evaluate(new_ad_accounts_sensor, sim, instance, None)
    assert isinstance(result, dg.SensorResult)
    assert apply_partitions(instance, result) == [chosen]
    assert not any("adaccounts" in path for path in sim.stats()["by_path"])


def test_hostile_account_id_from_the_api_is_rejected(
    sim: Simulator, instance: dg.DagsterInstance
) -> None:
    hostile = dataclasses.replace(sim.world.accounts[0], id="act_1/../../x", index=99)
    sim.world.accounts.append(hostile)
    with pytest.raises(Exception) as failure:
        evaluate(new_ad_accounts_sensor, sim, instance, None)
    chain = [failure.value, failure.value.__cause__, failure.value.__context__]
    assert any(isinstance(e, InvalidPartitionKey) for e in chain), chain
    assert "act_<digits>" in str(failure.value)
    assert instance.get_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME) == []


# ---------------------------------------------------------------- changed objects


def activity_days(
    sim: Simulator, account_id: str, since: dt.datetime, until: dt.datetime
) -> set[str]:
    """Partitions (account|local day) of the activities logged in [since, until]."""
    zone = ZoneInfo(sim.world.account(account_id).timezone_name)
    keys = set()
    for record in sim.world.objects(account_id, "activities"):
        moment = dt.datetime.strptime(record["event_time"], EVENT_TIME_FORMAT)
        if since <= moment <= until:
            keys.add(f"{account_id}|{moment.astimezone(zone).date().isoformat()}")
    return keys


def test_activities_trigger_exactly_the_partitions_that_changed(
    past_sim: Simulator, instance: dg.DagsterInstance
) -> None:
    sim = past_sim
    accounts = sorted(a.id for a in sim.world.accounts)
    instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, accounts)
    since = dt.datetime.combine(sim.world.anchor_today, dt.time(), tzinfo=dt.UTC) - dt.timedelta(
        days=6
    )
    cursor = activities_cursor(dict.fromkeys(accounts, since))

    before = dt.datetime.now(dt.UTC)
    result = evaluate(changed_objects_sensor, sim, instance, cursor)
    assert isinstance(result, dg.SensorResult)
    requested = [str(r.partition_key) for r in result.run_requests or []]
    expected = set().union(
        *(activity_days(sim, a, since - ACTIVITIES_OVERLAP, before) for a in accounts)
    )
    assert expected, "the simulated world logs recent changes"
    assert len(requested) == len(set(requested))  # one run per changed partition
    assert set(requested) == expected
    # Nothing from before the cursor: the oldest requested day is the cursor's day or later.
    assert (
        min(k.split("|")[1] for k in requested) >= (since - dt.timedelta(days=1)).date().isoformat()
    )

    # The same cursor gives the same run keys (the daemon drops what it already launched).
    repeat = evaluate(changed_objects_sensor, sim, instance, cursor)
    assert isinstance(repeat, dg.SensorResult)
    assert [r.run_key for r in repeat.run_requests or []] == [
        r.run_key for r in result.run_requests or []
    ]

    # The cursor moved to now for every account: nothing new, nothing requested.
    state = load_activities_cursor(result.cursor)
    assert sorted(state) == accounts
    assert all(c.until >= int(before.timestamp()) for c in state.values())
    after = evaluate(changed_objects_sensor, sim, instance, result.cursor)
    assert isinstance(after, dg.SensorResult)
    assert not after.run_requests
    assert after.skip_reason is not None
    assert "No object changes" in (after.skip_reason.skip_message or "")


def test_changed_partitions_run_the_object_assets_with_the_account_tag(
    past_sim: Simulator, instance: dg.DagsterInstance
) -> None:
    account = past_sim.world.accounts[0].id
    instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, [account])
    since = dt.datetime.combine(past_sim.world.anchor_today, dt.time(), tzinfo=dt.UTC)
    cursor = activities_cursor({account: since - dt.timedelta(days=14)})
    requests = resolved_requests(changed_objects_sensor, past_sim, instance, cursor)
    assert requests
    job = defs.resolve_job_def("meta_objects_refresh")
    assert changed_objects_sensor.job_name == job.name
    assert {k.path[-1] for k in job.asset_layer.executable_asset_keys} == {
        "campaigns",
        "adsets",
        "ads",
        "adcreatives",
    }
    for request in requests:
        assert request.tags[ACCOUNT_TAG] == account
        assert request.tags["meta/trigger"] == "activities"


def test_first_evaluation_reads_only_the_recent_change_log(
    past_sim: Simulator, instance: dg.DagsterInstance
) -> None:
    accounts = sorted(a.id for a in past_sim.world.accounts)
    instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, accounts)
    # The world's last change is ten days old; a new cursor starts a few days back.
    result = evaluate(changed_objects_sensor, past_sim, instance, None)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    assert sorted(load_activities_cursor(result.cursor)) == accounts


def test_an_account_whose_change_log_fails_keeps_its_cursor(
    past_sim: Simulator, instance: dg.DagsterInstance
) -> None:
    sim = past_sim
    accounts = sorted(a.id for a in sim.world.accounts)
    instance.add_dynamic_partitions(ACCOUNTS_PARTITIONS_NAME, accounts)
    since = dt.datetime.combine(sim.world.anchor_today, dt.time(), tzinfo=dt.UTC) - dt.timedelta(
        days=6
    )
    cursor = activities_cursor(dict.fromkeys(accounts, since))
    broken = accounts[0]
    sim.inject("code_200", times=1, path_contains=f"{broken}/activities")
    result = evaluate(changed_objects_sensor, sim, instance, cursor)
    assert isinstance(result, dg.SensorResult)
    requested_accounts = {str(r.partition_key).split("|")[0] for r in result.run_requests or []}
    assert broken not in requested_accounts
    assert requested_accounts  # the others went on
    state = load_activities_cursor(result.cursor)
    assert state[broken] == load_activities_cursor(cursor)[broken]
    assert all(state[a].until > int(since.timestamp()) for a in accounts if a != broken)


def test_no_registered_accounts_skips(sim: Simulator, instance: dg.DagsterInstance) -> None:
    assert isinstance(evaluate(changed_objects_sensor, sim, instance, None), dg.SkipReason)
