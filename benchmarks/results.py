"""Benchmark results: one JSON file, a Markdown table and a PNG chart in docs/benchmarks/.

Each scenario saves its own section of ``results.json`` (so scenarios can be
re-run one at a time); :func:`render` rebuilds ``results.md`` and ``chart.png``
from whatever the file holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("META_BENCH_OUT", ROOT / "docs" / "benchmarks"))
RESULTS = OUT / "results.json"
TABLE = OUT / "results.md"
CHART = OUT / "chart.png"


def load() -> dict[str, Any]:
    if RESULTS.exists():
        return dict(json.loads(RESULTS.read_text()))
    return {}


def save(scenario: str, data: dict[str, Any]) -> None:
    """Store one scenario's figures (replacing its previous ones) with when and where."""
    OUT.mkdir(parents=True, exist_ok=True)
    results = load()
    results[scenario] = {
        **data,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}",
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def row(metric: str, value: str, target: str = "", met: bool | None = None) -> dict[str, Any]:
    """One line of the Markdown table."""
    return {"metric": metric, "value": value, "target": target, "met": met}


ORDER = ("backfill", "rate_limited", "cost_per_record", "memory")
TITLES = {
    "backfill": "1. Latency-bound backfill",
    "rate_limited": "2. Rate-limited extraction",
    "cost_per_record": "3. Cost per record",
    "memory": "4. Memory",
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | figure | measured | target | met |",
        "|---|---|---|---|---|",
    ]
    for name in ORDER:
        section = results.get(name)
        if not section:
            continue
        for i, r in enumerate(section.get("rows", [])):
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            title = TITLES[name] if i == 0 else ""
            lines.append(f"| {title} | {r['metric']} | {r['value']} | {r['target']} | {met} |")
    side_by_side = [r for n in ORDER for r in results.get(n, {}).get("baseline_rows", [])]
    for i, r in enumerate(side_by_side):
        title = "5. Baseline side by side" if i == 0 else ""
        lines.append(f"| {title} | {r['metric']} | {r['value']} | {r['target']} | |")
    setups = [
        f"- **{TITLES[n]}**: {results[n]['setup']}"
        for n in ORDER
        if results.get(n, {}).get("setup")
    ]
    if side_by_side:
        setups.append(
            "- **5. Baseline side by side**: benchmarks/baselines/sequential.py on the same "
            "partitions, simulator and budget in the same run (one process, one request at a "
            "time, a page written per request, backoff 0.1 s doubling on 429 or a throttle code)"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(setups) + "\n"


def chart(results: dict[str, Any]) -> bool:
    """Draw chart.png; False (and nothing written) when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    # Left: wall time of ours, the baseline and the bound, per scenario that has all three.
    groups = []
    for name, label in (
        ("backfill", "1. latency-bound\nbackfill"),
        ("rate_limited", "2. rate-limited\nextraction"),
    ):
        section = results.get(name, {}).get("chart")
        if section:
            groups.append((label, section))
    width = 0.26
    for i, (series, colour) in enumerate(
        (("bound_s", "#9aa5b1"), ("ours_s", "#2b6cb0"), ("baseline_s", "#dd6b20"))
    ):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        values = [section.get(series, 0.0) for _, section in groups]
        bars = left.bar(
            xs,
            values,
            width,
            color=colour,
            label={
                "bound_s": "bound",
                "ours_s": "meta_pipeline (Dagster)",
                "baseline_s": "sequential baseline",
            }[series],
        )
        for bar, value in zip(bars, values, strict=True):
            left.annotate(
                f"{value:.0f}s",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    left.set_xticks(range(len(groups)), [g[0] for g in groups])
    left.set_ylabel("wall time, seconds")
    left.set_title("Wall time against the bound")
    left.legend(fontsize=8)
    # Right: each target as measured / limit (below 1 is met, for ">=" targets inverted).
    labels, ratios = [], []
    for name in ORDER:
        target = results.get(name, {}).get("target_ratio")
        if target is not None:
            labels.append(target["label"])
            ratios.append(target["ratio"])
    colours = ["#38a169" if r <= 1.0 else "#e53e3e" for r in ratios]
    bars = right.barh(range(len(ratios)), ratios, color=colours)
    for bar, value in zip(bars, ratios, strict=True):
        right.annotate(
            f" {value:.2f}", (value, bar.get_y() + bar.get_height() / 2), va="center", fontsize=8
        )
    right.axvline(1.0, color="black", linewidth=1)
    right.set_yticks(range(len(labels)), labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("measured / target limit (green: target met)")
    right.set_title("Targets")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(CHART)
    plt.close(fig)
    return True


def render() -> str:
    results = load()
    text = markdown(results)
    OUT.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    chart(results)
    return text
