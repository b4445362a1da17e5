"""``meta-pipeline simulator`` serves until interrupted and never prints the app secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import signal
import subprocess
import sys

import pytest
import requests

pytestmark = pytest.mark.timeout(60)


def test_cli_serves_prints_accounts_and_stops_on_ctrl_c() -> None:
    secret = "cli-app-secret-value"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meta_pipeline.cli",
            "simulator",
            "--port",
            "0",
            "--accounts",
            "2",
            "--seed",
            "9",
            "--today",
            "2026-11-28",
            "--app-secret",
            secret,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        match = re.search(r"at (http://127\.0\.0\.1:[0-9]+)", output)
        assert match, output
        accounts = re.findall(r"^\s+(act_[0-9]+)\s", output, flags=re.MULTILINE)
        assert len(accounts) == 2
        proof = hmac.new(secret.encode(), b"sim-token", hashlib.sha256).hexdigest()
        response = requests.get(
            f"{match.group(1)}/v25.0/me/adaccounts",
            params={"access_token": "sim-token", "appsecret_proof": proof},
            timeout=10,
        )
        assert [a["id"] for a in response.json()["data"]] == accounts
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert secret not in output + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
