import sys, time, logging, warnings
sys.path.insert(0, "benchmarks")
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
import scale
from assay.platform.generators import get_generator
n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
mode = sys.argv[2] if len(sys.argv) > 2 else "time"
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
settings = eval(sys.argv[4]) if len(sys.argv) > 4 else {}
exp, rows = scale.experiment(n, 0)
gen = get_generator("noisy_ei", settings) if settings else get_generator("noisy_ei")
def ask(seed):
    t0, c0 = time.perf_counter(), time.process_time()
    r = gen.generate(exp, 1, seed=seed)
    c = r.candidates[0]
    x = [c.parameters[k] for k in scale.PROBLEM.names]
    return time.perf_counter()-t0, time.process_time()-c0, scale.true_value(x), r
exp.model_state = ask(99)[3].model_state
if mode == "prof":
    from pyinstrument import Profiler
    p = Profiler(); p.start(); ask(0); p.stop(); print(p.output_text(unicode=False, color=False, show_all=False)[:12000])
else:
    for s in range(reps):
        w, c, v, r = ask(s)
        print(f"seed {s}: wall {w:.3f} cpu {c:.3f} value {v:.4f} info { {k: r.info.get(k) for k in ('fit_seconds','optimize_seconds','acquisition')} }")
