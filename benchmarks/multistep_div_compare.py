"""Paired GAP differences per seed block (prints mean ± s.e.)."""
import json, math, statistics, sys
from pathlib import Path
sys.path.insert(0, "/work/wt")
from msdiv.benchmarks.multistep import PROBLEMS, RunResult  # noqa
C = Path("/work/wt/msdiv/benchmarks/results/multistep-div/init2d+20d")
def gaps(f, m):
    fn = PROBLEMS[f](); out = {}
    for p in (C / f / m).glob("seed*.json"):
        r = RunResult(**json.loads(p.read_text())); out[r.seed] = r.gap(2 * fn.dim, fn.optimal_value)
    return out
def ms(d):
    if len(d) < 2: return "–"
    return f"{statistics.fmean(d):+.3f} ± {statistics.stdev(d)/math.sqrt(len(d)):.3f} (n={len(d)})"
pairs = [("ms2_botorch","ms2"),("ms2_div","ms2"),("ms2_div03","ms2"),("ms2_div3","ms2"),("ms2_div3","ei"),("ms2","ei")]
for block, seeds in [("seeds 0-19", range(20)), ("seeds 20-39", range(20, 40)), ("seeds 0-39", range(40))]:
    print(f"\n{block}\n| function | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |")
    for f in ["dropwave", "twobasin2", "eggholder", "sixhumpcamel"]:
        cells = []
        for a, b in pairs:
            ga, gb = gaps(f, a), gaps(f, b)
            cells.append(ms([ga[s] - gb[s] for s in seeds if s in ga and s in gb]))
        print(f"| {f} | " + " | ".join(cells) + " |")
