"""Settings: a missing or malformed one fails with one line naming it, before any request."""

from __future__ import annotations

import pytest

from meta_pipeline.resources.errors import MetaConfigError
from meta_pipeline.resources.meta_api import MetaAdsClient

from .conftest import TOKEN


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"access_token": ""}, "META_ACCESS_TOKEN (access_token) is not set"),
        ({"access_token": "   "}, "META_ACCESS_TOKEN (access_token) is not set"),
        ({"api_version": "v25"}, "META_API_VERSION (api_version) 'v25' must look like v25.0"),
        ({"api_version": "25.0"}, "META_API_VERSION (api_version) '25.0' must look like v25.0"),
        ({"graph_url": "ftp://graph.facebook.com"}, "META_GRAPH_URL (graph_url)"),
        ({"graph_url": "https://graph.facebook.com/v25.0"}, "META_GRAPH_URL (graph_url)"),
        ({"page_size": 0}, "page_size 0 must be between 1 and 5000"),
        ({"max_attempts": 0}, "max_attempts 0 must be at least 1"),
        ({"read_timeout_seconds": 0}, "read_timeout_seconds 0"),
        ({"pacing_threshold_pct": 100}, "pacing_threshold_pct 100"),
    ],
)
def test_bad_setting_fails_with_one_line_naming_it(settings: dict, expected: str) -> None:
    config = {"access_token": TOKEN, **settings}
    with pytest.raises(MetaConfigError) as caught:
        MetaAdsClient(**config).open()
    message = str(caught.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert TOKEN not in message


def test_token_with_spaces_is_rejected_without_echoing_it() -> None:
    with pytest.raises(MetaConfigError) as caught:
        MetaAdsClient(access_token="abc def-secret-value").open()
    assert "META_ACCESS_TOKEN" in str(caught.value)
    assert "secret-value" not in str(caught.value)


def test_client_used_before_open_says_so() -> None:
    client = MetaAdsClient(access_token=TOKEN, graph_url="http://127.0.0.1:9")
    with pytest.raises(MetaConfigError, match="not open"):
        client.get("me")


def test_defaults_and_context_manager() -> None:
    client = MetaAdsClient(access_token=TOKEN)
    assert client.api_version == "v25.0"
    assert client.graph_url == "https://graph.facebook.com"
    with client as opened:
        assert opened.base_url == "https://graph.facebook.com/v25.0"
    with pytest.raises(MetaConfigError, match="not open"):
        client.get("me")
