"""The NDJSON codec of stored partitions against the real emulator: exact round trips,
the standard library's reading of what the fast codec refuses, field-only reads."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math

import pytest

from meta_pipeline.io_managers import PartitionStore
from meta_pipeline.io_managers.store import ndjson
from meta_pipeline_tests.io_managers.synthetic import ASSET_KEY

PARTITION = "act_1|2026-11-01"


@pytest.mark.timeout(60)
def test_records_read_back_exactly_including_what_the_fast_codec_refuses(
    store: PartitionStore,
) -> None:
    records = [
        {"id": "1", "big": 2**70, "neg": -(2**65), "small": 1.5e-5, "text": 'é\u2028\x1f"\\/'},
        {"id": "2", "nested": {"list": [1, None, True, {"k": "v"}]}, "empty": {}},
        {"id": "3", "spend": "0.01"},
    ] * 3
    store.commit_partition(ASSET_KEY, PARTITION, iter(records), api_version=None, fingerprint=None)
    back = list(store.iter_records(ASSET_KEY, PARTITION))
    assert back == records
    assert type(back[0]["big"]) is int  # not rounded to a float on the way back

    # Lines the fast decoder refuses (NaN and a lone surrogate escape, as json.dumps
    # wrote them before) and blank lines read as the standard library reads them.
    location = store.location(ASSET_KEY, PARTITION)
    manifest = store.read_manifest_at(location)
    assert manifest is not None
    raw = b'{"id":"a","v":NaN}\n\n{"id":"b","s":"\\ud800"}\n{"id":"c"}\n'
    stored = store.put_object(
        location,
        manifest.objects[0].path,
        gzip.compress(raw, mtime=0),
        records=3,
        content_type="application/gzip",
    )
    odd = dataclasses.replace(manifest, objects=(stored,))
    values = list(store.iter_manifest_records(location, odd))
    assert [v["id"] for v in values] == ["a", "b", "c"]
    assert math.isnan(values[0]["v"]) and values[1]["s"] == "\ud800"
    rows = [
        r
        for (batch,) in store.iter_manifest_selections(location, odd, [("id", "s")])
        for r in batch
    ]
    assert rows == [("a", None), ("b", "\ud800"), ("c", None)]


@pytest.mark.timeout(60)
def test_field_reader_reads_only_named_fields_and_still_rejects_broken_json(
    store: PartitionStore,
) -> None:
    records = [
        {"ad_id": str(i), "date_start": "2026-11-01", "spend": f"{i}.5", "x": {"ad_id": "no"}}
        for i in range(2000)
    ]
    manifest = store.commit_partition(
        ASSET_KEY, PARTITION, iter(records), api_version=None, fingerprint=None
    )
    location = store.location(ASSET_KEY, PARTITION)
    selections = [("ad_id", "missing", "spend"), ("spend",), ()]
    rows, spends, nothing = ([], [], [])
    for batch in store.iter_manifest_selections(location, manifest, selections):
        rows += batch[0]
        spends += batch[1]
        nothing += batch[2]
    # Top-level fields only (the nested "ad_id" is not taken), None where absent; one
    # field gives bare values, none gives empty tuples.
    assert rows == [(r["ad_id"], None, r["spend"]) for r in records]
    assert spends == [r["spend"] for r in records]
    assert nothing == [()] * len(records)

    broken = b'{"ad_id":"1","x":{"y":[1,}}\n'
    stored = store.put_object(
        location,
        manifest.objects[0].path,
        gzip.compress(broken, mtime=0),
        records=1,
        content_type="application/gzip",
    )
    odd = dataclasses.replace(manifest, objects=(stored,))
    with pytest.raises(ValueError):
        list(store.iter_manifest_selections(location, odd, [("ad_id",)]))


def test_ndjson_bytes_are_deterministic_and_what_json_dumps_wrote_for_api_records() -> None:
    records = [
        {"ad_id": "23963600030000006", "spend": "0.01", "n": 3, "f": 0.25, "é": "ü\u2028"},
        {"actions": [{"action_type": "link_click", "value": "2"}], "none": None, "t": True},
        {"big": 2**70},
    ]
    data = ndjson(records)
    assert data == ndjson([dict(r) for r in records])
    assert data == b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records
    )
