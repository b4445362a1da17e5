"""Object names: derived from asset key and validated partition key only."""

from __future__ import annotations

import dagster as dg
import pytest

from meta_pipeline.io_managers.layout import (
    InvalidStorageName,
    partition_location,
    validate_attempt_id,
)
from meta_pipeline.partitions import InvalidPartitionKey

ASSET = dg.AssetKey(["meta", "insights"])


def test_layout_of_a_partition() -> None:
    location = partition_location("my-bucket", "backups/meta", ASSET, "act_42|2026-11-01")
    assert location.folder == "backups/meta/meta/insights/account_id=act_42/date=2026-11-01"
    assert location.manifest_uri == f"gs://my-bucket/{location.folder}/_manifest.json"
    assert location.data_object_path("abc123", 7) == "attempt=abc123/part-00007.jsonl.gz"
    assert location.ledger_path("abc123") == "attempt=abc123/_ledger.json"


def test_multi_partition_key_is_accepted() -> None:
    key = dg.MultiPartitionKey({"account": "act_7", "date": "2026-01-31"})
    location = partition_location("b-1", "", ASSET, key)
    assert location.folder == "meta/insights/account_id=act_7/date=2026-01-31"


@pytest.mark.parametrize(
    "key",
    [
        "act_1/../../etc|2026-11-01",
        "act_1|2026-11-01/../x",
        "act_1|2026-13-01",
        "act_1|2026-11-01|x",
        "../act_1|2026-11-01",
        "act_\u0661\u0662|2026-11-01",  # Arabic-Indic digits
        "act_1",
        "2026-11-01|act_1",
        "",
        None,
        dg.MultiPartitionKey({"account": "act_1%2F..", "date": "2026-11-01"}),
    ],
)
def test_hostile_partition_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidPartitionKey):
        partition_location("bucket-ok", "meta", ASSET, key)


@pytest.mark.parametrize(
    ("bucket", "prefix", "asset"),
    [
        ("", "meta", ASSET),
        ("Bad_Bucket!", "meta", ASSET),
        ("bucket-ok", "../meta", ASSET),
        ("bucket-ok", "a//b", ASSET),
        ("bucket-ok", "meta", dg.AssetKey(["..", "x"])),
        ("bucket-ok", "meta", dg.AssetKey(["a b"])),
    ],
)
def test_unsafe_bucket_prefix_or_asset_rejected(bucket: str, prefix: str, asset) -> None:
    with pytest.raises(InvalidStorageName):
        partition_location(bucket, prefix, asset, "act_1|2026-11-01")


def test_manifest_paths_cannot_escape_the_partition_folder() -> None:
    location = partition_location("bucket-ok", "meta", ASSET, "act_1|2026-11-01")
    with pytest.raises(InvalidStorageName):
        location.object_name("../../act_2/date=2026-11-01/part-00000.jsonl.gz")
    with pytest.raises(InvalidStorageName):
        validate_attempt_id("../x")
