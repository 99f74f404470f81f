#!/usr/bin/env python
"""A fuzzing campaign over every entry point (tests/fuzzing.py): random bad input, each case in a
subprocess with a timeout. Prints a summary table and writes every non-passing case to JSON.

    python tools/fuzz.py --cases 4000 --seed 100000 --out fuzz_report.json

Re-run one case with ``python tests/fuzzing.py --case FAMILY SEED``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fuzzing  # noqa: E402

# Relative case counts: the CLI cases train for a few steps, so they are rarer.
WEIGHTS = {"rasterize": 30, "knn": 10, "ply": 15, "checkpoint": 15, "dataset": 20, "densify": 8, "cli": 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="total cases over all families")
    parser.add_argument("--seed", type=int, default=1_000_000, help="first seed (CI samples start at 0)")
    parser.add_argument("--families", nargs="*", default=sorted(WEIGHTS), choices=sorted(WEIGHTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--out", default="fuzz_report.json")
    args = parser.parse_args()
    total_weight = sum(WEIGHTS[family] for family in args.families)
    counts = {family: max(1, args.cases * WEIGHTS[family] // total_weight) for family in args.families}
    cases = fuzzing.sample_cases(counts, args.seed)
    started = time.monotonic()
    tally = collections.Counter()

    def progress(result) -> None:
        tally[result.status] += 1
        if result.status not in ("ok", "refused"):
            print(f"{result.status}: {result.family} {result.seed}: {result.detail}", flush=True)

    results = fuzzing.run_cases(cases, timeout=args.timeout, jobs=args.jobs, progress=progress)
    by_family = collections.defaultdict(collections.Counter)
    for result in results:
        by_family[result.family][result.status] += 1
    statuses = ("ok", "refused", "failure", "crash", "hang")
    print(f"\n{len(results)} cases in {time.monotonic() - started:.0f} s")
    print(f"{'family':<12}" + "".join(f"{status:>9}" for status in statuses))
    for family in sorted(by_family):
        print(f"{family:<12}" + "".join(f"{by_family[family][status]:>9}" for status in statuses))
    bad = [result.__dict__ for result in results if result.status not in ("ok", "refused")]
    Path(args.out).write_text(json.dumps({"cases": len(results), "counts": {f: dict(c) for f, c in by_family.items()},
                                          "problems": bad}, indent=1))
    print(f"wrote {args.out}: {len(bad)} problem case(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
