"""Paired GAP differences of the root-choice study (issue 20 follow-up), by seed block.

Reads ``benchmarks/results/multistep-div/init2d+20d`` (written by ``benchmarks/multistep.py
--cache benchmarks/results/multistep-div``) and prints, per function, mean ± standard error
over seeds of the per-seed GAP differences (same seed = same initial design), for seeds
0-19, 20-39 (the confirmatory block) and all.

Example:
    python benchmarks/multistep_div_compare.py
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from assay.benchmarks.multistep import PROBLEMS, RunResult

CACHE = Path(__file__).resolve().parent / "results" / "multistep-div" / "init2d+20d"
PAIRS = [
    ("ms2_botorch", "ms2"),
    ("ms2_div", "ms2"),
    ("ms2_div03", "ms2"),
    ("ms2_div3", "ms2"),
    ("ms2_div3", "ei"),
    ("ms2", "ei"),
]
FUNCTIONS = ["dropwave", "twobasin2", "eggholder", "sixhumpcamel"]


def gaps(function: str, method: str) -> dict[int, float]:
    fn = PROBLEMS[function]()
    out = {}
    for p in (CACHE / function / method).glob("seed*.json"):
        r = RunResult(**json.loads(p.read_text()))
        out[r.seed] = r.gap(2 * fn.dim, fn.optimal_value)
    return out


def mean_se(d: list[float]) -> str:
    if len(d) < 2:
        return "–"
    return (
        f"{statistics.fmean(d):+.3f} ± {statistics.stdev(d) / math.sqrt(len(d)):.3f} (n={len(d)})"
    )


def main() -> None:
    blocks = [("seeds 0-19", range(20)), ("seeds 20-39", range(20, 40)), ("seeds 0-39", range(40))]
    for block, seeds in blocks:
        print(f"\n{block}\n\n| function | " + " | ".join(f"{a} − {b}" for a, b in PAIRS) + " |")
        print("|" + "---|" * (len(PAIRS) + 1))
        for f in FUNCTIONS:
            cells = []
            for a, b in PAIRS:
                ga, gb = gaps(f, a), gaps(f, b)
                cells.append(mean_se([ga[s] - gb[s] for s in seeds if s in ga and s in gb]))
            print(f"| {f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
