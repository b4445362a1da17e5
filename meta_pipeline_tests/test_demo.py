"""``make demo``'s command, small: it runs the main job and says what it wrote where."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_demo_materializes_every_asset_and_prints_the_summary(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "meta-pipeline"), "demo"]
    command += ["--workdir", str(tmp_path), "--accounts", "2", "--days", "1", "--profile", "clean"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "2 partitions, every asset" in out
    assert "0 failed partition run(s)" in out
    summary = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line.strip().startswith("meta/")
    }
    assert set(summary) == {
        "meta/ad_accounts", "meta/campaigns", "meta/adsets", "meta/ads",
        "meta/adcreatives", "meta/insights", "meta/daily_campaign_spend",
    }  # fmt: skip
    partitions, records = (int(v) for v in summary["meta/insights"][:2])
    assert partitions == 2 and records > 0
    assert summary["meta/ad_accounts"][:2] == ["2", "2"]
    assert "gs://meta-demo/meta/insights/account_id=act_" in out
