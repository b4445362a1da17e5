"""The client reads proxy settings from the environment when it opens, and never ~/.netrc."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from meta_pipeline.resources.errors import RetryBudgetExhausted
from meta_pipeline.resources.meta_api import MetaAdsClient
from meta_pipeline_tests.resources.conftest import TOKEN


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(sim: Any) -> MetaAdsClient:
    return MetaAdsClient(access_token=TOKEN, graph_url=sim.base_url, max_attempts=1)


def test_a_proxy_from_the_environment_is_used(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on the proxy's port: going through it must fail, going around it not.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _client(sim).open() as client, pytest.raises(RetryBudgetExhausted, match="ProxyError"):
        client.get("me", {"fields": "id"})

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with _client(sim).open() as client:
        assert client.get("me", {"fields": "id"})["id"]


def test_a_netrc_entry_never_replaces_the_bearer_token(
    sim: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with _client(sim).open() as client:
        # requests with trust_env would send Basic auth from .netrc instead of the bearer.
        assert client.get("me", {"fields": "id"})["id"]
