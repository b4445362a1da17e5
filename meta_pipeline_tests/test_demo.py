"""``make demo``'s command: it runs the main job, says what it wrote where, is idempotent on a
second run, and Ctrl-C leaves nothing running."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = [str(Path(sys.executable).parent / "meta-pipeline"), "demo"]
ASSETS = {
    "meta/ad_accounts", "meta/campaigns", "meta/adsets", "meta/ads",
    "meta/adcreatives", "meta/insights", "meta/daily_campaign_spend",
}  # fmt: skip


def _run_demo(workdir: Path, *extra: str, days: int = 1) -> str:
    command = [*DEMO, "--workdir", str(workdir), "--accounts", "2", "--days", str(days)]
    command += ["--profile", "clean", *extra]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _summary(out: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.strip().startswith("meta/")
    }


@pytest.mark.timeout(400)
def test_demo_materializes_every_asset_then_a_second_run_skips_what_is_committed(
    tmp_path: Path,
) -> None:
    first = _run_demo(tmp_path)
    assert "2 partitions, every asset: 0 already committed, 2 to materialize" in first
    assert "[  2/2]" in first  # one progress line per partition
    assert "0 failed partition run(s)" in first
    summary = _summary(first)
    assert set(summary) == ASSETS
    partitions, records = (int(v) for v in summary["meta/insights"][:2])
    assert partitions == 2 and records > 0
    assert summary["meta/ad_accounts"][:2] == ["2", "2"]
    assert "gs://meta-demo/meta/insights/account_id=act_" in first
    # The bucket is on disk under the work folder, so the data outlives the emulator.
    assert any((tmp_path / "gcs").rglob("*_manifest.json"))

    second = _run_demo(tmp_path)
    assert "2 already committed, 0 to materialize" in second
    assert "[  1/" not in second
    assert _summary(second) == summary  # the same data, read back from the kept bucket

    third = _run_demo(tmp_path, "--refresh")
    assert "0 already committed, 2 to materialize" in third
    assert _summary(third)["meta/insights"][:2] == summary["meta/insights"][:2]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) == 0


@pytest.mark.timeout(300)
def test_ctrl_c_mid_run_stops_the_simulator_the_emulator_and_every_child(tmp_path: Path) -> None:
    command = [*DEMO, "--workdir", str(tmp_path), "--accounts", "2", "--days", "3"]
    command += ["--profile", "clean"]
    # Its own process group, which the test signals as a terminal's Ctrl-C does.
    demo = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line)
            if "[  1/6]" in line:
                break
        out = "".join(lines)
        assert "[  1/6]" in out, out
        sim_url = re.search(r"simulator\s+(http://\S+)", out)
        gcs_url = re.search(r"GCS emulator (http://\S+)", out)
        assert sim_url and gcs_url, out
        assert _port_open(sim_url[1]) and _port_open(gcs_url[1])
        children = _descendants(demo.pid)
        assert children, "the GCS emulator runs as a child process"
        # Mid-way through the second partition's run.
        os.killpg(demo.pid, signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    out += rest
    assert demo.returncode == 130, out[-3000:]
    assert "Interrupted" in out
    assert "[  3/6]" not in out  # it stopped instead of going on with the next partitions
    assert not _port_open(sim_url[1])
    assert not _port_open(gcs_url[1])
    assert [pid for pid in children if _alive(pid)] == []

    # What was committed before the interrupt is kept; the next run finishes the rest.
    again = _run_demo(tmp_path, days=3)
    committed = int(re.search(r"(\d+) already committed", again)[1])  # type: ignore[index]
    assert committed >= 1
    assert "0 failed partition run(s)" in again
    assert _summary(again)["meta/insights"][0] == "6"


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.mark.timeout(300)
def test_ui_serves_the_demo_world_with_the_daemon_and_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(Path(sys.executable).parent / "meta-pipeline"), "ui", "--workdir", str(tmp_path)]
    command += ["--accounts", "2", "--profile", "clean", "--port", str(port)]
    ui = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert ui.stdout is not None
        banner = "".join(ui.stdout.readline() for _ in range(3))
        assert f"Dagster UI: {url}" in banner, banner
        sim_url = re.search(r"simulator (http://[^,\s]+)", banner)
        gcs_url = re.search(r"GCS emulator (http://\S+)", banner)
        assert sim_url and gcs_url, banner
        daemons: list[str] = []
        for _ in range(150):
            with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
                health = _graphql(
                    url,
                    "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }",
                )
                statuses = health["instance"]["daemonHealth"]["allDaemonStatuses"]
                daemons = [s["daemonType"] for s in statuses if s["healthy"]]
                if "SENSOR" in daemons and "BACKFILL" in daemons:
                    break
            time.sleep(2)
        # The webserver answers and the daemon runs sensors, schedules and backfills.
        assert {"SENSOR", "SCHEDULER", "BACKFILL"} <= set(daemons), daemons
        # The demo's accounts are registered as partitions in the UI's instance.
        partitions = _graphql(
            url,
            '{ nodes: assetNodes(assetKeys: [{path: ["meta", "insights"]}]) '
            "{ partitionKeysByDimension { name partitionKeys } } }",
        )
        dimensions = {
            d["name"]: d["partitionKeys"]
            for d in partitions["nodes"][0]["partitionKeysByDimension"]
        }
        assert len(dimensions["account"]) == 2
        children = _descendants(ui.pid)
        os.killpg(ui.pid, signal.SIGINT)
        out, _ = ui.communicate(timeout=120)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    assert ui.returncode == 0, out[-3000:]
    for service in (url, sim_url[1], gcs_url[1]):
        assert not _port_open(service), service
    assert [pid for pid in children if _alive(pid)] == []
