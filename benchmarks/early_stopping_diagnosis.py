"""Where an Assay early-stopping rule gains or loses against Optuna's MedianPruner, on the
cached curves of ``benchmarks/early_stopping.py`` (same configurations, same orders).

For each seed and ordering (the first the original), the rules and MedianPruner run on the
identical sequence; prints, per rule, the paired accuracy difference (``--quality``) to
MedianPruner at 0.5/0.75/1x MedianPruner's epochs (mean ± SE over seeds, wins/ties/losses
over seeds, then per seed), the same-trial-budget summary (each seed's mean over its
orderings), and with ``-v`` the epoch at which each method stopped the 8 configurations with
the best final validation accuracy (20 = ran to the end).

    python benchmarks/early_stopping_diagnosis.py --workload mlp --trials 40 --stream 64 \\
        --rules model rate -v
    python benchmarks/early_stopping_diagnosis.py --rules ratchet \\
        --extra '{"ratchet": {"strategy": "percentile", "reference": "completed", ...}}'
"""

from __future__ import annotations

import argparse
import json
import random
import statistics as st
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import early_stopping as es


def crossing(workload: str) -> str:
    """How much a workload's cached curves cross: Spearman's rank correlation of the value at
    epoch s with the final value, and how many of the top-10% finals sit below the median at s."""

    def ranks(x: list[float]) -> list[int]:
        out = [0] * len(x)
        for k, i in enumerate(sorted(range(len(x)), key=lambda i: x[i])):
            out[i] = k
        return out

    es.set_workload(workload)
    curves = [e["val"] for e in es._load_cache().values()]
    finals = [c[-1] for c in curves]
    top = sorted(range(len(finals)), key=lambda i: -finals[i])[: max(1, len(finals) // 10)]
    parts = []
    for s in (1, 3, 5, 10):
        early = [c[s - 1] for c in curves]
        rho = st.correlation(ranks(early), ranks(finals))
        below = sum(early[i] < st.median(early) for i in top)
        parts.append(f"epoch {s}: rho {rho:.2f}, top-10% below median {below}/{len(top)}")
    return f"{workload} ({len(curves)} curves): " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mlp", choices=list(es.WORKLOADS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--stream", type=int, default=64)
    ap.add_argument("--orders", type=int, default=8)
    ap.add_argument("--rules", nargs="+", default=["model"])
    ap.add_argument("--extra", default="{}", help="JSON {name: early_stopping settings}")
    ap.add_argument("-v", action="store_true", help="list the best configurations' stops")
    ap.add_argument("--quality", default="test", choices=["test", "val"],
                    help="the chosen trial's test accuracy or its final validation accuracy")  # fmt: skip
    ap.add_argument("--crossing", action="store_true", help="only print how much curves cross")
    args = ap.parse_args(argv)
    if args.crossing:
        print(crossing(args.workload))
        return 0
    es.set_workload(args.workload)
    key = f"best_{args.quality}"
    es.ASSAY_RULES.update(json.loads(args.extra))
    rules, n, stream, fr = args.rules, args.trials, args.stream, [0.5, 0.75, 1.0]
    tb: dict[str, dict[int, list[tuple[float, int]]]] = {}
    agg: dict[str, dict[float, list[tuple[int, float]]]] = {
        r: {f: [] for f in fr} for r in [*rules, "none"]
    }
    for seed in args.seeds:
        cfgs = es.shared_configs(seed, stream)
        cache = es._load_cache()
        finals = [cache[es.config_key(c)]["val"][-1] for c in cfgs]
        for k in range(args.orders):
            perm = list(range(stream))
            if k:
                random.Random(10_000 * seed + k).shuffle(perm)
            order = [cfgs[i] for i in perm]
            med = es.run_optuna("median", seed, stream, "shared", order)
            budget = es.summarize(med, trials=n)["epochs"]
            runs = {r: es.replay_assay(es.ASSAY_RULES.get(r), order) for r in [*rules, "none"]}
            for r, recs in [*runs.items(), ("median", med)]:
                x = es.summarize(recs, trials=n)
                tb.setdefault(r, {}).setdefault(seed, []).append((x[key], x["epochs"]))
            for f in fr:
                m = es.summarize(med, budget=round(f * budget))
                for r, recs in runs.items():
                    a = es.summarize(recs, budget=round(f * budget))
                    agg[r][f].append((seed, a[key] - m[key]))
            if k == 0 and args.v:
                print(f"seed {seed}: MedianPruner's epochs on its first {n} trials {budget}")
                for pos in sorted(range(stream), key=lambda i: -finals[perm[i]])[:8]:
                    test = cache[es.config_key(order[pos])]["test"]
                    stops = {r: runs[r][pos]["epochs"] for r in rules}
                    print(f"  position {pos:2d} final val {finals[perm[pos]]:.4f} test {test:.4f} "
                          f"median {med[pos]['epochs']:2d} {stops}")  # fmt: skip
    for r in [*rules, "none"]:
        cells = []
        for f in fr:
            per_seed: dict[int, list[float]] = {}
            for s, d in agg[r][f]:
                per_seed.setdefault(s, []).append(d)
            ds = [st.fmean(v) for v in per_seed.values()]
            se = es._se(ds)
            wtl = f"{sum(x > 0 for x in ds)}/{sum(x == 0 for x in ds)}/{sum(x < 0 for x in ds)}"
            cells.append(f"{f}x: {st.fmean(ds):+.4f} ± {se:.4f} ({wtl}) "
                         f"[{' '.join(f'{x:+.3f}' for x in ds)}]")  # fmt: skip
        print(f"{r} vs median at equal epochs ({args.quality}):", " | ".join(cells))
    # The same trial budget per seed: the mean over its orderings, paired per ordering with
    # no stopping; mean ± SE over seeds.
    base = tb["none"]
    for r, per_seed in tb.items():
        q = [st.fmean(a[0] for a in v) for v in per_seed.values()]
        d = [st.fmean(a[0] - b[0] for a, b in zip(v, base[s], strict=True))
             for s, v in per_seed.items()]  # fmt: skip
        ep = sum(a[1] for v in per_seed.values() for a in v) / sum(
            b[1] for v in base.values() for b in v
        )
        se, qse = es._se(d), es._se(q)
        print(f"first {n} trials ({args.orders} orderings), {r}: {args.quality} "
              f"{st.fmean(q):.4f} ± {qse:.4f}, {100 * ep:.1f}% of no-stopping epochs, "
              f"Δ vs none (paired) {st.fmean(d):+.4f} ± {se:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
