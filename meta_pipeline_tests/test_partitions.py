import datetime as dt

import dagster as dg
import pytest

from meta_pipeline.partitions import (
    InvalidPartitionKey,
    account_day_partitions,
    default_start_date,
    parse_partition_key,
    validate_account_id,
)


def test_parse_partition_key_round_trip() -> None:
    parsed = parse_partition_key("act_123|2026-11-01")
    assert parsed.account_id == "act_123"
    assert parsed.day == dt.date(2026, 11, 1)
    assert parsed.partition_key == "act_123|2026-11-01"


def test_multi_partition_key_orders_account_first() -> None:
    key = dg.MultiPartitionKey({"date": "2026-11-01", "account": "act_9"})
    assert str(key) == "act_9|2026-11-01"
    assert parse_partition_key(key).account_id == "act_9"
    assert [d.name for d in account_day_partitions.partitions_defs] == ["account", "date"]


@pytest.mark.parametrize(
    "key",
    [
        "act_12/../x|2026-11-01",
        "act_1|2|2026-11-01",
        "act_1\n|2026-11-01",
        "act_1#|2026-11-01",
        "act_\u0661\u0662|2026-11-01",  # Arabic-Indic digits look like digits
        "123|2026-11-01",
        "act_1|2026-13-01",
        "act_1|2026-02-30",
        "act_1|26-11-01",
        "",
    ],
)
def test_hostile_partition_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidPartitionKey, match="Invalid"):
        parse_partition_key(key)


def test_account_id_accepts_bare_digits_only() -> None:
    assert validate_account_id("42") == "act_42"
    with pytest.raises(InvalidPartitionKey, match="act_<digits>"):
        validate_account_id("act_42 ")


def test_default_start_stays_inside_meta_history_window() -> None:
    assert default_start_date(dt.date(2026, 11, 29)) == dt.date(2023, 11, 1)
    assert default_start_date(dt.date(2026, 1, 5)) == dt.date(2023, 1, 1)
