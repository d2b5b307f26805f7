"""Is the centre of the search space special on the benchmark problems? (no optimizer runs)

For the multi-objective problems of ``mo_quality`` and the continuous single-objective ones
of ``bo_quality``, two noise-free numbers, both about the *initial design* only:

* ``percentile``: where the centre's value falls among 4096 uniform points (single-objective:
  the objective of feasible points, infeasible ones ranked worst; multi-objective: the
  hypervolume of the single point). 50 means an ordinary point; near 100 a special one.
* the initial design's quality with and without the centre as its first arm (``n`` = the
  design size Assay uses, the other arms the first Sobol points of 200 scrambles):
  single-objective, mean simple regret of the best feasible design point; multi-objective,
  mean log10 hypervolume gap of the design's front.

    python benchmarks/centre_point.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from torch.quasirandom import SobolEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bo_quality
import mo_quality

SCRAMBLES = 200


def designs(dim: int, n: int, centre: bool) -> list[list[list[float]]]:
    out = []
    for s in range(SCRAMBLES):
        pts = SobolEngine(dim, scramble=True, seed=s).draw(n).tolist()
        out.append(([[0.5] * dim, *pts[: n - 1]]) if centre else pts)
    return out


def so_value(p: bo_quality.Problem, u: list[float]) -> float:
    x = [lo + (hi - lo) * v for v, (lo, hi) in zip(u, p.bounds, strict=True)]
    return p.objective(x) if p.feasible(x) else math.inf


def mo_hv(p: mo_quality.Problem, us: list[list[float]]) -> float:
    return p.log_hv_gap(us)


def percentile(values: list[float], v: float, larger_better: bool) -> float:
    better = sum((x < v) if larger_better else (x > v) for x in values)
    return 100.0 * better / len(values)


def main() -> int:
    rnd = torch.rand(4096, 6, generator=torch.Generator().manual_seed(0)).tolist()
    print("| problem | kind | design n | centre percentile | design with centre "
          "| design without |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in ("branin_currin", "dtlz2", "c_branin_currin"):
        p = mo_quality.PROBLEMS[name]()
        d, n = p.dim, max(p.dim + 1, 5)
        gaps = [-mo_hv(p, [u[:d]]) for u in rnd]  # -gap: larger is better
        pc = percentile(gaps, -mo_hv(p, [[0.5] * d]), True)
        w, wo = (sum(mo_hv(p, D) for D in designs(d, n, c)) / SCRAMBLES for c in (True, False))
        print(f"| {name} | MO, log10 HV gap | {n} | {pc:.0f} | {w:.3f} | {wo:.3f} |")
    for name in ("branin", "gramacy", "hartmann6_l1"):
        p = bo_quality.PROBLEMS[name]
        d, n = len(p.bounds), max(2 * len(p.bounds) + 1, 5)
        vals = [so_value(p, u[:d]) for u in rnd]
        pc = percentile(vals, so_value(p, [0.5] * d), False)
        opt = p.optimum

        def regret(D: list[list[float]], p: bo_quality.Problem = p, opt: float = opt) -> float:
            best = min(so_value(p, u) for u in D)
            return best - opt if math.isfinite(best) else p.penalty - opt

        w, wo = (sum(regret(D) for D in designs(d, n, c)) / SCRAMBLES for c in (True, False))
        print(f"| {name} | SO, simple regret | {n} | {pc:.0f} | {w:.3f} | {wo:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
