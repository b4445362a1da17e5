"""The emulator runner: free port, bucket created, stops cleanly, both modes."""

from __future__ import annotations

import pytest
import requests

from meta_pipeline.gcs_emulator import running_gcs_emulator


@pytest.mark.timeout(60)
@pytest.mark.parametrize("in_process", [False, True])
def test_emulator_serves_the_bucket_on_a_free_port_and_stops(in_process: bool) -> None:
    with running_gcs_emulator(bucket="made-by-runner", in_process=in_process) as url:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        response = requests.get(f"{url}/storage/v1/b/made-by-runner", timeout=10)
        assert response.status_code == 200
        assert response.json()["name"] == "made-by-runner"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/storage/v1/b", timeout=5)
