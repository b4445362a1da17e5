"""The client's JSON parse reads every answer as json.loads does, and fails where it failed."""

from __future__ import annotations

import json
import math

import pytest

from meta_pipeline.resources.meta_api import parse_json


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data":[{"ad_id":"1","spend":"0.01"}],"paging":{"cursors":{"after":"x"}}}',
        b'{"n":18446744073709551617,"f":1.5e-05,"neg":-0.0,"a":1,"a":2}',  # exact, last wins
        b'{"s":"\\ud800","u":"\\u00e9\xc3\xa9"}',  # a lone surrogate escape: json.loads reads it
        '\ufeff{"bom":true}'.encode(),  # a UTF-8 byte order mark
        '{"utf16":"\u00e9"}'.encode("utf-16"),  # another encoding json.loads detects
        b"[1,2,3]",
    ],
)
def test_answers_parse_as_json_loads_parses_them(raw: bytes) -> None:
    assert parse_json(raw) == json.loads(raw)


def test_nan_is_read_as_json_loads_reads_it() -> None:
    assert math.isnan(parse_json(b'{"v":NaN}')["v"])


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b'{"a":', b"\xff{}"])
def test_what_is_not_json_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json(raw)
