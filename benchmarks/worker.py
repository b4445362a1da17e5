"""One benchmark worker: materialize partitions one Dagster run after another, report timings.

Run by :mod:`benchmarks.harness` with the pipeline's environment set (simulator,
GCS emulator, DAGSTER_HOME). Prints one JSON line: per run its wall and CPU
seconds, success, event count and where the time went according to the event
log (launch before the first event, steps, between steps).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

T_IMPORT = time.perf_counter()

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` would report the parent's at fork."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _build_job(spec: dict[str, Any]) -> Any:
    import dagster as dg

    from meta_pipeline.assets.insights import insights_assets
    from meta_pipeline.assets.objects import object_assets
    from meta_pipeline.config import build_resources
    from meta_pipeline.jobs import STEP_RETRY_POLICY, extract_job, jobs
    from meta_pipeline.partitions import account_day_partitions

    resources = build_resources()
    if spec.get("meta"):
        resources["meta"] = resources["meta"].model_copy(update=spec["meta"])
    if spec.get("settings"):
        resources["settings"] = resources["settings"].model_copy(update=spec["settings"])
    job_defs: list[Any] = list(jobs)
    name = extract_job.name
    if spec.get("selection"):
        name = "bench_selection"
        job_defs.append(
            dg.define_asset_job(
                name,
                selection=dg.AssetSelection.assets(
                    *[dg.AssetKey.from_user_string(k) for k in spec["selection"]]
                ),
                partitions_def=account_day_partitions,
                op_retry_policy=STEP_RETRY_POLICY,
            )
        )
    defs = dg.Definitions(
        assets=[*object_assets, *insights_assets], jobs=job_defs, resources=resources
    )
    return defs.resolve_job_def(name)


def _event_breakdown(instance: Any, run_id: str, called_at: float, returned_at: float) -> dict:
    """Where a run's time went, from its event log timestamps (seconds since the epoch)."""
    entries = instance.all_logs(run_id)
    steps: dict[str, list[float]] = {}
    kinds: dict[str, int] = {}
    first = last = None
    for entry in entries:
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG_MESSAGE"
        kinds[kind] = kinds.get(kind, 0) + 1
        first = entry.timestamp if first is None else min(first, entry.timestamp)
        last = entry.timestamp if last is None else max(last, entry.timestamp)
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        kind = event.event_type_value
        if kind == "STEP_START":
            steps.setdefault(entry.step_key, [entry.timestamp, entry.timestamp])[0] = (
                entry.timestamp
            )
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            steps.setdefault(entry.step_key, [entry.timestamp, entry.timestamp])[1] = (
                entry.timestamp
            )
    in_steps = sum(end - start for start, end in steps.values())
    span = (last - first) if first is not None and last is not None else 0.0
    return {
        "events": len(entries),
        "event_types": kinds,
        "steps": len(steps),
        "launch_s": round((first - called_at) if first else 0.0, 4),
        "in_steps_s": round(in_steps, 4),
        "between_steps_s": round(max(span - in_steps, 0.0), 4),
        "after_last_event_s": round((returned_at - last) if last else 0.0, 4),
    }


def _trace_memory(path: str) -> None:
    """Every 0.2 s: RSS and the main thread's innermost project frames (finding memory growth)."""
    import os
    import threading
    import traceback

    main_id = threading.main_thread().ident

    def sample() -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        with open(path, "w") as out:
            while True:
                with open("/proc/self/statm") as statm:
                    rss = int(statm.read().split()[1]) * page / 2**20
                frame = sys._current_frames().get(main_id)
                stack = [
                    f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}:{f.name}"
                    for f in traceback.extract_stack(frame)
                    if "meta_pipeline" in f.filename
                ][-4:]
                out.write(f"{rss:.0f} {' > '.join(stack)}\n")
                out.flush()
                time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    import os

    import dagster as dg

    if os.environ.get("META_BENCH_MEMTRACE"):
        _trace_memory(os.environ["META_BENCH_MEMTRACE"])

    profiler = None
    if spec.get("profile_to"):
        import cProfile  # the stdlib profiler: aggregated by function, written as pstats

        profiler = cProfile.Profile()
        profiler.enable()
    job = _build_job(spec)
    ready = time.perf_counter()
    runs = []
    with dg.DagsterInstance.get() as instance:
        keys = spec["partitions"]
        per_run = max(int(spec.get("partitions_per_run") or 1), 1)
        for first in range(0, len(keys), per_run):
            batch = keys[first : first + per_run]
            # One partition, or a range run like those the backfill policy launches.
            target: dict[str, Any] = (
                {"partition_key": batch[0]}
                if len(batch) == 1
                else {"tags": {RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]}}
            )
            wall0, cpu0 = time.perf_counter(), time.process_time()
            called_at = time.time()
            result = job.execute_in_process(
                **target,
                instance=instance,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            returned_at = time.time()
            runs.append(
                {
                    "partition": batch[0] if len(batch) == 1 else f"{batch[0]}...{batch[-1]}",
                    "partitions": len(batch),
                    "run_id": result.run_id,
                    "success": result.success,
                    # The first failure's message, so a failed benchmark says why.
                    "error": next(
                        (
                            str(e.message)[:2000]
                            for e in result.all_events
                            if e.is_failure and e.message
                        ),
                        None,
                    ),
                    "wall_s": round(time.perf_counter() - wall0, 4),
                    "cpu_s": round(time.process_time() - cpu0, 4),
                    "_called_at": called_at,
                    "_returned_at": returned_at,
                }
            )
        done_at = time.time()  # the breakdown below reads the event log: not part of the job
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(spec["profile_to"])
        for run in runs:
            run.update(
                _event_breakdown(
                    instance, run["run_id"], run.pop("_called_at"), run.pop("_returned_at")
                )
            )
    report = {
        "startup_s": round(ready - T_IMPORT, 3),
        "done_at": done_at,
        "runs": runs,
        "cpu_total_s": round(time.process_time(), 3),
        "peak_rss_mib": _peak_rss_mib(),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
