import sys, time, logging, warnings
sys.path.insert(0, "benchmarks"); warnings.simplefilter("ignore")
import scale
n = int(sys.argv[1])
exp, rows = scale.experiment(n, 0)
for s in range(3):
    w = scale.optuna_ask(rows, s)
    print(f"optuna n={n}: wall {w:.3f} cpu {scale.CPU[-1]:.3f}")
