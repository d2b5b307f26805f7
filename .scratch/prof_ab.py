import sys, cProfile, pstats, warnings, logging
sys.path.insert(0, "benchmarks"); warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
import ab_simulation as ab
import assay.platform.generators.base as base
orig = base.ModelBasedGenerator._generate
def spy(self, *a, **k):
    r = orig(self, *a, **k); print("INFO", {k: v for k, v in r.info.items() if k != "data_notes"}); return r
base.ModelBasedGenerator._generate = spy
cProfile.run("print(ab.batch_ask_latency(0, 10))", ".scratch/ab.prof")
s = pstats.Stats(".scratch/ab.prof"); s.sort_stats("cumulative").print_stats("speed19/platform|botorch/optim/(optimize|fit)|analytic_nei", 25)
