"""``python -m meta_pipeline_tests.promises.soak_summary REPORT``: the soak's figures.

REPORT holds one JSON line per kill-anywhere example (META_PROMISES_REPORT).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(path: Path) -> dict[str, int]:
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {
        "cases": len(lines),
        "kills": sum(x["kills"] for x in lines),
        "cases_with_two_kills": sum(1 for x in lines if x["kills"] >= 2),
        "faults_injected": sum(x["faults_injected"] for x in lines),
        "records_compared": sum(x["records_compared"] for x in lines),
        "lost": sum(x["lost"] for x in lines),
        "duplicated": sum(x["duplicated"] for x in lines),
        "rows_refetched_after_a_kill": sum(x["refetched_rows"] for x in lines),
    }


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    if not path.exists():
        sys.stderr.write(f"no soak report at {path}\n")
        return 1
    for name, value in summarize(path).items():
        sys.stdout.write(f"{name:>28}: {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
