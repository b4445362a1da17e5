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
import textwrap
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
    for retired in RETIRED:
        results.pop(retired, None)
    results[scenario] = {
        **data,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}",
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def row(metric: str, value: str, target: str = "", met: bool | None = None) -> dict[str, Any]:
    """One line of the Markdown table."""
    return {"metric": metric, "value": value, "target": target, "met": met}


ORDER = (
    "backfill",
    "backfill_sqlite",
    "backfill_slow_api",
    "rate_limited",
    "cost_per_record",
    "memory",
)
# Scenarios make bench no longer runs: dropped from results.json when it is next written.
RETIRED = ("backfill_pgbouncer",)
TITLES = {
    "backfill": "1. Latency-bound backfill",
    "backfill_sqlite": "1b. The same on SQLite",
    "backfill_slow_api": "1c. The same at 250 ms per request",
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
    tallest = [s.get(k, 0.0) for _, s in groups for k in ("bound_s", "ours_s", "baseline_s")]
    left.set_ylim(0, max([1.0, *tallest]) * 1.3)
    left.legend(fontsize=8, loc="upper left")
    # Right: each target as measured / limit (below 1 is met, for ">=" targets inverted).
    labels, ratios = [], []
    for name in ORDER:
        target = results.get(name, {}).get("target_ratio")
        if target is not None:
            labels.append(target["label"])
            ratios.append(target["ratio"])
    colours = ["#38a169" if r <= 1.0 else "#e53e3e" for r in ratios]
    # Log scale: the ratios span 0.01 to 100; no growth at all is drawn at 0.01.
    shown = [max(r, 0.01) for r in ratios]
    bars = right.barh(range(len(ratios)), shown, color=colours)
    for bar, value, x in zip(bars, ratios, shown, strict=True):
        y = bar.get_y() + bar.get_height() / 2
        right.annotate(f" {value:.2f}", (x, y), va="center", fontsize=8)
    right.set_xscale("log")
    right.set_xlim(0.005, max([*shown, 2.0]) * 4)
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


def readme_section(results: dict[str, Any] | None = None) -> str:
    """The README's "Benchmarks" section: how to run, the chart, the table, what is missed."""
    results = load() if results is None else results
    when = max((s.get("measured_at", "") for s in results.values()), default="")[:10]
    machine = next((s.get("machine") for s in results.values() if s.get("machine")), "")
    parts = [
        "## Benchmarks",
        "",
        "`make bench` (not part of `make test`; about a quarter of an hour) runs the scenarios "
        "of issue 8. Each runs the real pipeline through Dagster (the `meta_extract` job, one "
        "range run per account as a backfill launches them, against a real instance) on the "
        "simulator and the GCS emulator, "
        "counts requests with the simulator's `GET /_simulator/stats`, computes its bound in "
        "the same run, and saves [results.json](docs/benchmarks/results.json), "
        "[results.md](docs/benchmarks/results.md) and the chart below to `docs/benchmarks/`. "
        "`python -m benchmarks --quick` runs everything at smoke-test sizes into a temp "
        "directory; each scenario runs alone too (`python -m benchmarks.backfill --help`).",
        "",
        f"Figures from one run ({when}; {machine}; the simulator, the GCS emulator and "
        "PostgreSQL share the machine's cores with the runs):",
        "",
        "![Benchmarks: wall time against the bound, and each target](docs/benchmarks/chart.png)",
        "",
        markdown(results).rstrip(),
    ]
    throughput = results.get("simulator_throughput")
    if throughput:
        parts += [
            "",
            f"Simulator throughput (`python -m benchmarks.simulator_throughput`): "
            f"{throughput['pages_per_second']:.0f} pages/s of 100 records with the `clean` "
            "profile and one keep-alive client in this run (target 300; 400-530 on a quiet "
            "machine).",
        ]
    missed = _missed(results)
    if missed:
        parts += ["", "### Targets not met, and why", "", *missed]
    return "\n".join(_wrap(p) for p in parts) + "\n"


def _wrap(paragraph: str, width: int = 92) -> str:
    """Prose wrapped like the rest of the README; tables, images and headings left alone."""
    if not paragraph or paragraph.startswith(("|", "!", "#")):
        return paragraph
    indent = "  " if paragraph.startswith("- ") else ""
    return textwrap.fill(
        paragraph,
        width=width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _missed(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    backfill = results.get("backfill", {}).get("ours")
    if backfill and backfill["wall_over_bound"] > 1.5:
        out.append(_backfill_missed(results, backfill))
    limited = results.get("rate_limited", {}).get("ours")
    if limited and (limited["budget_used_pct"] < 90 or limited["throttled"]):
        out.append(
            f"- **2. Rate-limited extraction: {limited['budget_used_pct']:.0f} % of the budget "
            f"used, {limited['throttled']} hard throttle error(s) (target >= 90 %, 0).** Calls "
            f"per window: {limited['windows']}. Pacing keeps the budget's level between 60 % "
            "and 80 %, so a pause shorter than that buffer costs nothing; the low windows are "
            "the gaps between partitions, where a Dagster run starts, writes its events and "
            "commits without calling Meta, longer here than the buffer lasts."
        )
    cost = results.get("cost_per_record", {})
    if cost and cost["ours"]["cpu_s_per_100k"] > 2 * cost["floor"]["cpu_s_per_100k"]:
        ours, floor_ = cost["ours"], cost["floor"]
        out.append(
            f"- **3. Cost per record: {ours['cpu_s_per_100k'] / floor_['cpu_s_per_100k']:.1f}x "
            f"the floor (target 2x).** {ours['cpu_s_per_100k']:.2f} CPU s per 100,000 rows "
            f"against {floor_['cpu_s_per_100k']:.2f} ({ours['run_cpu_s']:.1f} CPU s for the "
            f"run, floor {floor_['parse_cpu_s'] + floor_['gzip_cpu_s']:.1f} s). Profiled with "
            "py-spy on the worker and timers around each stage: the run parses the pages "
            "(msgspec, faster than the floor's json.loads), encodes NDJSON (msgspec, one call "
            "per page) and gzips it at the floor's level, and the asset checks read the "
            "committed partition back from GCS (by design: they check what was stored), "
            "decoding only the key, spend and impressions fields of every line. Before these "
            "changes the run took 20.3 CPU s (8.0x), then 14.6 s (5.9x). What is left above "
            "2x is mostly per request and per run, not per record: the HTTP client cost "
            "about 1.5 ms of CPU per request in that profile (about 1.6 s for the 1,026 pages "
            "of 500 rows; since then the session reads proxy settings once, not on every "
            "request, about 0.3 ms less), the run's bookkeeping (Dagster events, paging, "
            "retries, pacing) about 1 s, and the checks' read-back about 1.1 s. Lever not "
            "taken: a larger default page size (2,000 rows a page took the run from 7.7 to "
            "7.0 CPU s in one measurement; Meta asks for smaller pages on heavy queries)."
        )
    return out


def _backfill_missed(results: dict[str, Any], backfill: dict[str, Any]) -> str:
    per = backfill["requests_per_partition"]
    latency_s = per * backfill["latency_ms"] / 1000
    text = (
        f"- **1. Latency-bound backfill: {backfill['wall_over_bound']}x the bound (target "
        f"1.5x; 19.7x before this round).** Two design changes brought it here: each "
        f"account's {backfill['days']} days run in one Dagster run (the assets' single-run "
        "backfill policy; each day is still its own partition, resumed, checkpointed, "
        "committed and checked on its own), where every day used to be a run of its own "
        "(launch, resources, 7 steps); and Dagster's PostgreSQL storage keeps pooled "
        "connections (`PooledPostgresStorage`), where dagster-postgres opened one per statement "
        "(418 connections per partition). A partition now takes "
        f"{backfill['run_wall_s_per_partition']:.2f} s of run time for {per:.1f} requests "
        f"({latency_s:.2f} s of latency)"
    )
    by_process = backfill.get("cpu_s_per_partition_by_process") or {}
    machine_cpu = backfill.get("machine_cpu_s_per_partition")
    utilization = backfill.get("machine_cpu_utilization")
    if by_process and machine_cpu and utilization:
        cores = backfill.get("cores", 2)
        accounts = backfill.get("accounts", 4)
        cpu_floor = machine_cpu * accounts / (cores * latency_s)
        text += (
            f". What is left is this machine more than the API: its {cores} cores ran "
            f"{accounts} Dagster runs, PostgreSQL, the simulator and the GCS emulator, "
            f"{utilization:.0%} busy, {machine_cpu:.2f} CPU s per partition in all (the "
            f"Dagster runs {by_process.get('dagster_runs', 0):.2f} s, PostgreSQL "
            f"{by_process.get('postgres', 0):.2f} s, the GCS emulator "
            f"{by_process.get('gcs_emulator', 0):.2f} s: a single-threaded Python server "
            "standing in for GCS that every run waits on, the simulator "
            f"{by_process.get('simulator', 0):.2f} s), so {accounts} accounts side by side "
            f"cannot go below about {cpu_floor:.1f}x the latency bound here. The rest is "
            "each partition's round trips besides Meta's, in series: about 50 to the GCS "
            "emulator (objects, ledger, commit, the checks' read-back), "
            f"{backfill['events_per_partition']:.0f} event-log writes (7 materializations, "
            "their planned events, a checkpoint each, 18 asset-check results) and the async "
            "report's poll waits"
        )
    slow = results.get("backfill_slow_api", {}).get("ours") or {}
    if slow:
        overhead = slow["dagster_overhead_s_per_partition"]
        polls = 2 * slow["latency_ms"] / 1000  # the simulator finishes a report in 2 polls
        text += (
            f". Where Meta's latency dominates (250 ms a request, nearer its own, scenario "
            f"1c) the same backfill runs at {slow['wall_over_bound']}x its bound, "
            f"{overhead:.2f} s per partition above its latency, {polls:.2f} s of it the async "
            "report's two poll waits (the benchmark sets the poll interval to the request "
            "latency)"
        )
    lite = results.get("backfill_sqlite", {}).get("ours") or {}
    if lite:
        text += (
            f"; on the local SQLite instance at {lite['wall_over_bound']}x "
            f"({lite['run_wall_s_per_partition']:.2f} s per partition)"
        )
    base = results["backfill"].get("baseline") or {}
    if base:
        text += (
            f". The sequential baseline writes no events, checkpoints nor checks and takes "
            f"{base['wall_s']:.0f} s against our {backfill['wall_s']:.0f} s"
        )
    return text + (
        ". Levers left: fewer event-log writes per partition (Dagster's "
        "DAGSTER_EVENT_BATCH_SIZE batches only materializations: a few percent here), and one "
        "async report for a whole range instead of one a day."
    )
