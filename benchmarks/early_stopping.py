"""Early stopping on real training curves: Assay's strategies vs no stopping, Optuna's
MedianPruner and HyperbandPruner, and Ray Tune's ASHA, at the same trial budget.

Workload: a torch MLP on scikit-learn's bundled 8x8 digits (no download), trained for
``--epochs`` epochs (default 20) with SGD + momentum; 5 parameters: learning rate (log),
hidden width (log int), weight decay (log), batch size (log int) and dropout. The objective
each method sees is the validation accuracy after each epoch (400 held-out images); the
*quality* reported is the **test** accuracy (397 other images) after full training of the best
arm among the method's fully trained trials (early-stopped trials never count: only a full
curve is a true final value). Training is deterministic given the parameters.

By default every method evaluates **the same configurations in the same order** (per seed, a
seeded random sample of the space: Assay through ``client.attach_trial``, Optuna through
``study.enqueue_trial``, Ray Tune through a ``grid_search`` over the list), so the table
compares stopping rules, not sampler luck. ``--generator sobol`` or ``noisy_ei`` lets Assay
propose its own trials instead (Optuna then samples with ``RandomSampler``, Ray at random).
Epochs consumed are summed over all trials (a stopped trial costs the epochs it ran).

Methods: ``none`` (Assay, no stopping), ``percentile``, ``threshold``, ``model`` (Assay,
through ``client.should_stop`` after every reported epoch, then ``client.early_stop``),
``optuna_median``, ``optuna_hyperband``, ``ray_asha``.

    python benchmarks/early_stopping.py                       # full: 5 seeds, 40 trials
    python benchmarks/early_stopping.py --seeds 2 --trials 16 # reduced
    python benchmarks/early_stopping.py --methods none percentile optuna_median
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EPOCHS = 20

SPACE = [
    {"name": "lr", "type": "float", "bounds": [1e-3, 1.0], "log": True},
    {"name": "hidden", "type": "int", "bounds": [4, 256], "log": True},
    {"name": "weight_decay", "type": "float", "bounds": [1e-6, 1e-1], "log": True},
    {"name": "batch_size", "type": "int", "bounds": [16, 256], "log": True},
    {"name": "dropout", "type": "float", "bounds": [0.0, 0.7]},
]

ASSAY_RULES: dict[str, dict[str, Any]] = {
    "percentile": {"strategy": "percentile", "percentile": 50, "min_progression": 3,
                   "min_curves": 4, "top_k": 1},
    "threshold": {"strategy": "threshold", "bound": 0.8, "min_progression": 4, "patience": 2},
    "model": {"strategy": "model", "alpha": 0.05, "min_progression": 3, "min_curves": 4},
}  # fmt: skip

_DATA: dict[str, Any] = {}


def shared_configs(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` random configurations of :data:`SPACE` (log-uniform where ``log``), seeded."""
    import random

    rng = random.Random(1000 + seed)
    out = []
    for _ in range(n):
        c: dict[str, Any] = {}
        for p in SPACE:
            lo, hi = p["bounds"]
            if p.get("log"):
                v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            else:
                v = rng.uniform(lo, hi)
            c[p["name"]] = round(min(max(v, lo), hi)) if p["type"] == "int" else v
        out.append(c)
    return out


def _data() -> dict[str, Any]:
    if not _DATA:
        import torch
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = torch.tensor(X / 16.0, dtype=torch.float32)
        y = torch.tensor(y)
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
        _DATA.update(X=X, y=y, train=perm[:1000], val=perm[1000:1400], test=perm[1400:])
    return _DATA


class Training:
    """One configuration's training, one epoch at a time (``epochs()`` yields
    ``(epoch, val_acc)``); ``test_accuracy`` after the last epoch."""

    def __init__(self, params: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.params = params
        self.d = _data()
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        h = int(params["hidden"])
        self.model = torch.nn.Sequential(
            torch.nn.Linear(64, h), torch.nn.ReLU(), torch.nn.Dropout(float(params["dropout"])),
            torch.nn.Linear(h, 10),
        )  # fmt: skip
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=float(params["lr"]), momentum=0.9,
            weight_decay=float(params["weight_decay"]),
        )  # fmt: skip
        self.g = g
        self.epochs_run = 0

    def _acc(self, idx: Any) -> float:
        self.model.eval()
        with self.torch.no_grad():
            out = self.model(self.d["X"][idx])
            if not self.torch.isfinite(out).all():
                return 0.0
            return (out.argmax(1) == self.d["y"][idx]).float().mean().item()

    def epochs(self, n: int = EPOCHS) -> Iterator[tuple[int, float]]:
        torch, d = self.torch, self.d
        bs = int(self.params["batch_size"])
        for epoch in range(1, n + 1):
            self.model.train()
            train = d["train"][torch.randperm(len(d["train"]), generator=self.g)]
            for idx in train.split(bs):
                self.opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(self.model(d["X"][idx]), d["y"][idx])
                if not torch.isfinite(loss):
                    break
                loss.backward()
                self.opt.step()
            self.epochs_run = epoch
            yield epoch, self._acc(d["val"])

    def test_accuracy(self) -> float:
        return self._acc(self.d["test"])


# -- methods: each returns {"best_test": float, "epochs": int, "stopped": int, ...} ----------
def run_assay(rule: dict[str, Any] | None, seed: int, trials: int, generator: str) -> dict:
    import assay

    client = assay.Client()
    spec: dict[str, Any] = dict(
        name=f"es-{seed}",
        parameters=SPACE,
        objective="val_acc",
        seed=seed,
        generator="sobol" if generator == "shared" else generator,
    )
    if rule is not None:
        spec["early_stopping"] = rule
    exp = client.create_experiment(**spec)
    epochs, stopped, best = 0, 0, (-1.0, -1.0)
    shared = shared_configs(seed, trials) if generator == "shared" else None
    for i in range(trials):
        if shared is not None:
            t = client.attach_trial(exp.id, shared[i])
        else:
            [t] = client.ask(exp.id)
        tr = Training(t.parameters)
        acc = 0.0
        was_stopped = False
        for epoch, acc in tr.epochs():
            client.report(t.id, epoch, val_acc=acc)
            if rule is not None and epoch < EPOCHS:
                d = client.should_stop(t.id)
                if d.should_stop:
                    client.early_stop(t.id, d.reason)
                    was_stopped = True
                    break
        epochs += tr.epochs_run
        if was_stopped:
            stopped += 1
            continue
        client.tell(t.id, {"val_acc": acc})
        if acc > best[0]:
            best = (acc, tr.test_accuracy())
    client.close()
    return {"best_val": best[0], "best_test": best[1], "epochs": epochs, "stopped": stopped}


def run_optuna(pruner_name: str, seed: int, trials: int, generator: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3)
        if pruner_name == "median"
        else optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    )
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner
    )
    if generator == "shared":
        for c in shared_configs(seed, trials):
            study.enqueue_trial(c)
    stats = {"epochs": 0, "stopped": 0}
    tests: dict[int, float] = {}

    def objective(trial: Any) -> float:
        params = {
            "lr": trial.suggest_float("lr", 1e-3, 1.0, log=True),
            "hidden": trial.suggest_int("hidden", 4, 256, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "batch_size": trial.suggest_int("batch_size", 16, 256, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.7),
        }
        tr = Training(params)
        acc = 0.0
        try:
            for epoch, acc in tr.epochs():
                trial.report(acc, epoch)
                if epoch < EPOCHS and trial.should_prune():
                    stats["stopped"] += 1
                    raise optuna.TrialPruned()
        finally:
            stats["epochs"] += tr.epochs_run
        tests[trial.number] = tr.test_accuracy()
        return acc

    study.optimize(objective, n_trials=trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value)
    return {"best_val": best.value, "best_test": tests[best.number], **stats}


def run_ray_asha(seed: int, trials: int, generator: str) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # fmt: skip

    def trainable(config: dict[str, Any]) -> None:
        tr = Training(config.get("cfg", config))
        for epoch, acc in tr.epochs():
            test = tr.test_accuracy() if epoch == EPOCHS else None
            tune.report({"val_acc": acc, "epoch": epoch, "test_acc": test})

    space = {
        "lr": tune.loguniform(1e-3, 1.0),
        "hidden": tune.lograndint(4, 257),
        "weight_decay": tune.loguniform(1e-6, 1e-1),
        "batch_size": tune.lograndint(16, 257),
        "dropout": tune.uniform(0.0, 0.7),
    }
    if generator == "shared":
        space = {"cfg": tune.grid_search(shared_configs(seed, trials))}
    sched = ASHAScheduler(time_attr="epoch", max_t=EPOCHS, grace_period=3, reduction_factor=3)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", scheduler=sched,
            num_samples=1 if generator == "shared" else trials,
            max_concurrent_trials=2, search_alg=tune.search.BasicVariantGenerator(
                random_state=seed),
        ),
        run_config=tune.RunConfig(verbose=0, storage_path=str(Path(".bench-cache").resolve())),
    )  # fmt: skip
    results = tuner.fit()
    epochs, stopped, best = 0, 0, (-1.0, -1.0)
    for r in results:
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        last = int(df["epoch"].max())
        epochs += last
        if last < EPOCHS:
            stopped += 1
            continue
        row = df[df["epoch"] == EPOCHS].iloc[-1]
        if row["val_acc"] > best[0]:
            best = (float(row["val_acc"]), float(row["test_acc"]))
    return {"best_val": best[0], "best_test": best[1], "epochs": epochs, "stopped": stopped}


METHODS: dict[str, Callable[[int, int, str], dict]] = {
    "none": lambda s, n, g: run_assay(None, s, n, g),
    "percentile": lambda s, n, g: run_assay(ASSAY_RULES["percentile"], s, n, g),
    "threshold": lambda s, n, g: run_assay(ASSAY_RULES["threshold"], s, n, g),
    "model": lambda s, n, g: run_assay(ASSAY_RULES["model"], s, n, g),
    "optuna_median": lambda s, n, g: run_optuna("median", s, n, g),
    "optuna_hyperband": lambda s, n, g: run_optuna("hyperband", s, n, g),
    "ray_asha": lambda s, n, g: run_ray_asha(s, n, g),
}


def _se(xs: list[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument(
        "--generator", default="shared",
        help="shared (the same configurations for every method) | sobol | noisy_ei",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    logging.getLogger("assay").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    raw: dict[str, list[dict]] = {}
    for method in args.methods:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            try:
                r = METHODS[method](seed, args.trials, args.generator)
            except Exception as e:  # report and keep going (e.g. Ray cannot start here)
                print(f"{method} seed {seed}: failed: {type(e).__name__}: {e}", file=sys.stderr)
                break
            r["seconds"] = time.perf_counter() - t0
            raw.setdefault(method, []).append(r)
            print(f"{method:17s} seed {seed}: test {r['best_test']:.4f} epochs {r['epochs']:4d} "
                  f"stopped {r['stopped']:3d} ({r['seconds']:.0f} s)", file=sys.stderr)  # fmt: skip
    base = statistics.fmean(r["epochs"] for r in raw.get("none", [{"epochs": float("nan")}]))
    print(f"\n{args.seeds} seeds x {args.trials} trials x {EPOCHS} epochs, generator "
          f"{args.generator}\n")  # fmt: skip
    print(
        "| method | best test acc (mean ± SE) | epochs (mean) | % of no-stopping epochs "
        "| trials stopped |"
    )
    print("|---|---|---|---|---|")
    for method, rs in raw.items():
        acc = [r["best_test"] for r in rs]
        ep = statistics.fmean(r["epochs"] for r in rs)
        st = statistics.fmean(r["stopped"] for r in rs)
        print(f"| {method} | {statistics.fmean(acc):.4f} ± {_se(acc):.4f} | {ep:.0f} | "
              f"{100 * ep / base:.0f}% | {st:.1f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
