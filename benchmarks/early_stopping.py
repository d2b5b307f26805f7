"""Early stopping on real training curves: Assay's strategies vs no stopping, Optuna's
MedianPruner and HyperbandPruner, and Ray Tune's ASHA, at the same trial budget.

Workload: a torch MLP on scikit-learn's bundled 8x8 digits (no download), trained for
``--epochs`` epochs (default 20) with SGD + momentum; 5 parameters: learning rate (log),
hidden width (log int), weight decay (log), batch size (log int) and dropout. The objective
each method sees is the validation accuracy after each epoch (400 held-out images); the
*quality* reported is the **test** accuracy (397 other images) after full training of the best
arm among the method's fully trained trials (early-stopped trials never count: only a full
curve is a true final value; ``--quality val`` reports its final validation accuracy instead).
Training is deterministic given the parameters. ``--workload warmup`` is the second workload,
where curves cross (see :data:`WARMUP_SPACE`).

By default every method evaluates **the same configurations in the same order** (per seed, a
seeded random sample of the space: Assay through ``client.attach_trial``, Optuna through
``study.enqueue_trial``, Ray Tune through a ``grid_search`` over the list), so the table
compares stopping rules, not sampler luck. ``--generator sobol`` or ``noisy_ei`` lets Assay
propose its own trials instead (Optuna then samples with ``RandomSampler``, Ray at random).
Epochs consumed are summed over all trials (a stopped trial costs the epochs it ran).

Methods: ``none`` (Assay, no stopping), ``percentile``, ``threshold``, ``model``, ``rate``,
``percentile_median``, ``percentile_ramp`` (Assay,
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

MLP_SPACE = [
    {"name": "lr", "type": "float", "bounds": [1e-3, 1.0], "log": True},
    {"name": "hidden", "type": "int", "bounds": [4, 256], "log": True},
    {"name": "weight_decay", "type": "float", "bounds": [1e-6, 1e-1], "log": True},
    {"name": "batch_size", "type": "int", "bounds": [16, 256], "log": True},
    {"name": "dropout", "type": "float", "bounds": [0.0, 0.7]},
]
# The second workload, where curves cross: peak learning rate, linear warm-up length, cosine
# decay to zero at the last epoch, on training labels of which 30% are replaced at random (a
# fixed draw). Fast starters (high peak, no warm-up) fit the noisy labels and fall back; long
# warm-ups and high peaks start slowly and gain most when the rate anneals at the end.
WARMUP_SPACE = [
    {"name": "lr", "type": "float", "bounds": [3e-3, 3.0], "log": True},
    {"name": "warmup", "type": "int", "bounds": [0, 12]},
    {"name": "hidden", "type": "int", "bounds": [16, 512], "log": True},
    {"name": "batch_size", "type": "int", "bounds": [16, 256], "log": True},
    {"name": "weight_decay", "type": "float", "bounds": [1e-6, 1e-2], "log": True},
]
WORKLOADS = {"mlp": MLP_SPACE, "warmup": WARMUP_SPACE}
WORKLOAD = "mlp"
SPACE = MLP_SPACE
LABEL_NOISE = 0.3  # the warmup workload's share of randomized training labels


def set_workload(name: str) -> None:
    """Select the workload (its space, its training and its curve cache)."""
    global WORKLOAD, SPACE
    WORKLOAD, SPACE = name, WORKLOADS[name]
    _CURVES.clear()


# The model rule's alpha, min_progression and the curve ensemble's window/neighbours were chosen
# on seeds 100-104 (``--first-seed 100``); min_curves = MedianPruner's n_startup_trials.
ASSAY_RULES: dict[str, dict[str, Any]] = {
    "percentile": {"strategy": "percentile", "percentile": 50, "min_progression": 3,
                   "min_curves": 4, "top_k": 1},
    "threshold": {"strategy": "threshold", "bound": 0.8, "min_progression": 4, "patience": 2},
    "model": {"strategy": "model", "alpha": 0.2, "min_progression": 1, "min_curves": 5},
    # The cost-aware criterion has no level to tune: the model rule's progression and curves.
    "rate": {"strategy": "model", "criterion": "rate", "min_progression": 1, "min_curves": 5},
    # Optuna's median rule in Assay's percentile strategy: the line over completed trials only,
    # the trial's best value so far; min_curves = n_startup_trials.
    "percentile_median": {"strategy": "percentile", "percentile": 50, "reference": "completed",
                          "compare": "best", "min_progression": 1, "min_curves": 5, "top_k": 1},
    # The median rule with a ramped start (issue 16): deciding from 3 completed curves on at a
    # percentile rising 16.7 -> 33.3 -> 50 (ramped_percentile); ramp_from = 3 chosen on seeds
    # 100-104 of both workloads (benchmarks/results/es_ramp_tuning.md), 5 and 50 are Optuna's.
    "percentile_ramp": {"strategy": "percentile", "percentile": 50, "reference": "completed",
                        "compare": "best", "min_progression": 1, "min_curves": 5, "top_k": 1,
                        "ramp_from": 3},
}  # fmt: skip

# MedianPruner as Optuna ships it (``n_startup_trials=5, n_warmup_steps=0``).
OPTUNA_MEDIAN: dict[str, Any] = {"n_startup_trials": 5, "n_warmup_steps": 0}
# Optuna's sampler when methods propose their own trials (``--generator`` not shared):
# ``random`` (as Assay's ``sobol``) or ``tpe`` (Optuna's default: the whole-system comparison
# against Assay's ``noisy_ei``).
OPTUNA_SAMPLER = "random"
RAY_GRACE = 1  # ASHA's grace period (epochs), its rung ladder 1, 3, 9

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
        noisy = y.clone()
        g = torch.Generator().manual_seed(1)
        flip = torch.rand(len(y), generator=g) < LABEL_NOISE
        noisy[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
        _DATA.update(X=X, y=y, y_noisy=noisy, train=perm[:1000], val=perm[1000:1400],
                     test=perm[1400:])  # fmt: skip
    return _DATA


def lr_at(params: dict[str, Any], epoch: int) -> float:
    """The warmup workload's learning rate in ``epoch`` (1-based): linear warm-up to the peak
    over ``warmup`` epochs, then cosine decay (Loshchilov & Hutter 2017, SGDR) to zero after
    the last epoch; the mlp workload's rate is constant."""
    lr = float(params["lr"])
    if WORKLOAD != "warmup":
        return lr
    w = int(params["warmup"])
    if epoch <= w:
        return lr * epoch / (w + 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - w - 1) / (EPOCHS - w)))


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
            torch.nn.Linear(64, h), torch.nn.ReLU(),
            torch.nn.Dropout(float(params.get("dropout", 0.0))), torch.nn.Linear(h, 10),
        )  # fmt: skip
        self.labels = self.d["y_noisy"] if WORKLOAD == "warmup" else self.d["y"]
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
            for group in self.opt.param_groups:
                group["lr"] = lr_at(self.params, epoch)
            train = d["train"][torch.randperm(len(d["train"]), generator=self.g)]
            for idx in train.split(bs):
                self.opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(self.model(d["X"][idx]),
                                                         self.labels[idx])  # fmt: skip
                if not torch.isfinite(loss):
                    break
                loss.backward()
                self.opt.step()
            self.epochs_run = epoch
            yield epoch, self._acc(d["val"])

    def test_accuracy(self) -> float:
        return self._acc(self.d["test"])


# -- the curve cache: each configuration is trained once, its curve replayed for every method --
RESULTS = Path(__file__).resolve().parent / "results"


def cache_path() -> Path:
    """The current workload's curve cache (``ASSAY_ES_CACHE`` overrides it; committed under
    ``benchmarks/results/`` so the tables can be re-derived without re-training)."""
    env = os.environ.get("ASSAY_ES_CACHE")
    if env:
        p = Path(env)
        return (p if WORKLOAD == "mlp" else p.with_name(f"{p.stem}_{WORKLOAD}{p.suffix}")).resolve()
    suffix = "" if WORKLOAD == "mlp" else f"_{WORKLOAD}"
    return RESULTS / f"early_stopping_curves{suffix}.json"


_CURVES: dict[str, dict[str, Any]] = {}


def config_key(params: dict[str, Any]) -> str:
    """A stable key for a configuration (floats to 10 significant digits)."""
    return "|".join(
        f"{p['name']}={int(params[p['name']])}"
        if p["type"] == "int"
        else f"{p['name']}={float(params[p['name']]):.10g}"
        for p in SPACE
    )


def _load_cache() -> dict[str, dict[str, Any]]:
    if not _CURVES and cache_path().exists():
        _CURVES.update(json.loads(cache_path().read_text()))
    return _CURVES


def build_cache(configs: list[dict[str, Any]]) -> int:
    """Train every configuration of ``configs`` not cached yet for :data:`EPOCHS` epochs and
    store its validation curve and final test accuracy; returns how many were trained."""
    cache = _load_cache()
    new = 0
    for c in configs:
        k = config_key(c)
        if k in cache:
            continue
        tr = Training(c)
        curve = [acc for _, acc in tr.epochs()]
        cache[k] = {"val": curve, "test": tr.test_accuracy()}
        new += 1
        if new % 20 == 0:
            _save_cache()
    _save_cache()
    return new


def _save_cache() -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_CURVES))
    tmp.replace(path)


class Replay:
    """A cached configuration's training, replayed: the same interface as :class:`Training`
    (training is deterministic given the parameters, so a replayed curve is the curve a
    re-training would report; epochs are still counted as they are consumed)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.entry = _load_cache()[config_key(params)]
        self.epochs_run = 0

    def epochs(self, n: int = EPOCHS) -> Iterator[tuple[int, float]]:
        for epoch in range(1, n + 1):
            self.epochs_run = epoch
            yield epoch, float(self.entry["val"][epoch - 1])

    def test_accuracy(self) -> float:
        assert self.epochs_run == EPOCHS, "the test accuracy is of a fully trained model"
        return float(self.entry["test"])


def train(params: dict[str, Any]) -> Training | Replay:
    """The replayed curve when the configuration is cached, else a live training."""
    if config_key(params) in _load_cache():
        return Replay(params)
    return Training(params)


# -- methods: each returns its trials in order, ``[{"epochs", "completed", "val", "test"}]`` --
def run_assay(
    rule: dict[str, Any] | None, seed: int, trials: int, generator: str,
    early_stopped: str | None = None,
) -> list[dict]:  # fmt: skip
    """Assay through its client; ``early_stopped`` is the model-based generator's setting
    (what its model makes of stopped trials, ``None``: its default; only with a model-based
    ``--generator``)."""
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
    if early_stopped is not None and generator not in ("shared", "sobol"):
        spec["generator_settings"] = {"early_stopped": early_stopped}
    exp = client.create_experiment(**spec)
    out: list[dict] = []
    shared = shared_configs(seed, trials) if generator == "shared" else None
    for i in range(trials):
        if shared is not None:
            t = client.attach_trial(exp.id, shared[i])
        else:
            [t] = client.ask(exp.id)
        tr = train(t.parameters)
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
        if was_stopped:
            out.append({"epochs": tr.epochs_run, "completed": False, "val": acc, "test": None})
            continue
        client.tell(t.id, {"val_acc": acc})
        out.append({"epochs": tr.epochs_run, "completed": True, "val": acc,
                    "test": tr.test_accuracy()})  # fmt: skip
    client.close()
    return out


def run_optuna(
    pruner_name: str, seed: int, trials: int, generator: str,
    configs: list[dict[str, Any]] | None = None,
) -> list[dict]:  # fmt: skip
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(**OPTUNA_MEDIAN)
        if pruner_name == "median"
        else optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)
    )
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if OPTUNA_SAMPLER == "tpe" and generator != "shared"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    if configs is None and generator == "shared":
        configs = shared_configs(seed, trials)
    for c in configs or []:
        study.enqueue_trial(c)
    out: list[dict] = []

    def objective(trial: Any) -> float:
        params = {
            p["name"]: (trial.suggest_int if p["type"] == "int" else trial.suggest_float)(
                p["name"], *p["bounds"], log=bool(p.get("log", False)))
            for p in SPACE
        }  # fmt: skip
        tr = train(params)
        acc = 0.0
        for epoch, acc in tr.epochs():
            trial.report(acc, epoch)
            if epoch < EPOCHS and trial.should_prune():
                out.append({"epochs": tr.epochs_run, "completed": False, "val": acc, "test": None})
                raise optuna.TrialPruned()
        out.append({"epochs": tr.epochs_run, "completed": True, "val": acc,
                    "test": tr.test_accuracy()})  # fmt: skip
        return acc

    study.optimize(objective, n_trials=trials)
    return out


def run_ray_asha(seed: int, trials: int, generator: str) -> list[dict]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # fmt: skip
    _load_cache()
    cache = dict(_CURVES)  # shipped to the workers with the trainable

    workload = WORKLOAD

    def trainable(config: dict[str, Any]) -> None:
        set_workload(workload)
        params = config.get("cfg", config)
        entry = cache.get(config_key(params))
        if entry is not None:
            for epoch in range(1, EPOCHS + 1):
                test = entry["test"] if epoch == EPOCHS else None
                tune.report({"val_acc": entry["val"][epoch - 1], "epoch": epoch, "test_acc": test})
            return
        tr = Training(params)
        for epoch, acc in tr.epochs():
            test = tr.test_accuracy() if epoch == EPOCHS else None
            tune.report({"val_acc": acc, "epoch": epoch, "test_acc": test})

    def dist(p: dict[str, Any]) -> Any:
        lo, hi = p["bounds"]
        if p["type"] == "int":
            return tune.lograndint(lo, hi + 1) if p.get("log") else tune.randint(lo, hi + 1)
        return tune.loguniform(lo, hi) if p.get("log") else tune.uniform(lo, hi)

    space: dict[str, Any] = {p["name"]: dist(p) for p in SPACE}
    configs = shared_configs(seed, trials) if generator == "shared" else None
    if configs is not None:
        space = {"cfg": tune.grid_search(configs)}
    sched = ASHAScheduler(time_attr="epoch", max_t=EPOCHS, grace_period=RAY_GRACE,
                          reduction_factor=3)  # fmt: skip
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
    rows = []
    for r in results:
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        params = r.config.get("cfg", r.config)
        order = configs.index(params) if configs is not None and params in configs else len(rows)
        last = int(df["epoch"].max())
        row = df[df["epoch"] == last].iloc[-1]
        done = last >= EPOCHS
        rows.append((order, {"epochs": last, "completed": done, "val": float(row["val_acc"]),
                             "test": float(row["test_acc"]) if done else None}))  # fmt: skip
    return [r for _, r in sorted(rows, key=lambda x: x[0])]


def replay_assay(rule: dict[str, Any] | None, configs: list[dict[str, Any]]) -> list[dict]:
    """What :func:`run_assay` does, on cached curves, calling the platform's rule directly
    (:func:`assay.platform.early_stopping.decide`, the function the service's
    ``should_stop`` calls, with the curves built as the store builds them: completed trials
    finished with their final observation, stopped ones partial). Used for the many
    orderings of the epoch-matched comparison; ``main`` checks that on the original order it
    reproduces the service run trial for trial."""
    from assay.platform.early_stopping import Curve, EarlyStoppingConfig, decide
    from assay.platform.experiment import Objective

    cfg = EarlyStoppingConfig.parse(rule) if rule is not None else None
    objective = Objective("val_acc")
    curves: list[Any] = []
    out: list[dict] = []
    for i, c in enumerate(configs):
        entry = _load_cache()[config_key(c)]
        finals = [cv.final["val_acc"] for cv in curves if cv.finished]
        best = max(finals) if finals else None
        pts: list[tuple[int, float]] = []
        stopped = False
        for epoch in range(1, EPOCHS + 1):
            pts.append((epoch, float(entry["val"][epoch - 1])))
            if cfg is not None and epoch < EPOCHS:
                mine = Curve(i, {"val_acc": list(pts)})
                if decide(cfg, objective, mine, curves, best_feasible=best).should_stop:
                    stopped = True
                    break
        acc = pts[-1][1]
        if stopped:
            curves.append(Curve(i, {"val_acc": pts}, False, {}, "early_stopped"))
            out.append({"epochs": len(pts), "completed": False, "val": acc, "test": None})
        else:
            curves.append(Curve(i, {"val_acc": pts}, True, {"val_acc": acc}, "completed"))
            out.append({"epochs": EPOCHS, "completed": True, "val": acc,
                        "test": float(entry["test"])})  # fmt: skip
    return out


def ordered_runs(method: str, configs: list[dict[str, Any]], seed: int) -> list[dict] | None:
    """One method on one ordering of the configurations (``None``: not re-orderable here)."""
    if method == "none":
        return replay_assay(None, configs)
    if method in ASSAY_RULES:
        return replay_assay(ASSAY_RULES[method], configs)
    if method == "optuna_median":
        return run_optuna("median", seed, len(configs), "shared", configs)
    if method == "optuna_hyperband":
        return run_optuna("hyperband", seed, len(configs), "shared", configs)
    return None


METHODS: dict[str, Callable[[int, int, str], list[dict]]] = {
    "none": lambda s, n, g: run_assay(None, s, n, g),
    "percentile": lambda s, n, g: run_assay(ASSAY_RULES["percentile"], s, n, g),
    "threshold": lambda s, n, g: run_assay(ASSAY_RULES["threshold"], s, n, g),
    "model": lambda s, n, g: run_assay(ASSAY_RULES["model"], s, n, g),
    "rate": lambda s, n, g: run_assay(ASSAY_RULES["rate"], s, n, g),
    "percentile_median": lambda s, n, g: run_assay(ASSAY_RULES["percentile_median"], s, n, g),
    "percentile_ramp": lambda s, n, g: run_assay(ASSAY_RULES["percentile_ramp"], s, n, g),
    # The ramped rule with the generator's ``early_stopped`` setting pinned (the default,
    # ``predicted``, is ``percentile_ramp``'s; all the same with --generator shared or sobol).
    "percentile_ramp_excl": lambda s, n, g: run_assay(
        ASSAY_RULES["percentile_ramp"], s, n, g, "exclude"
    ),
    "percentile_ramp_last": lambda s, n, g: run_assay(
        ASSAY_RULES["percentile_ramp"], s, n, g, "last_value"
    ),
    "percentile_ramp_pred": lambda s, n, g: run_assay(
        ASSAY_RULES["percentile_ramp"], s, n, g, "predicted"
    ),
    "optuna_median": lambda s, n, g: run_optuna("median", s, n, g),
    "optuna_hyperband": lambda s, n, g: run_optuna("hyperband", s, n, g),
    "ray_asha": lambda s, n, g: run_ray_asha(s, n, g),
}


def summarize(
    records: list[dict], *, trials: int | None = None, budget: int | None = None
) -> dict[str, Any]:
    """The method's outcome after its first ``trials`` trials, or within ``budget`` epochs
    (trials in order; one that could not finish within the budget does not count and its
    epochs are the budget's remainder). Quality: the test accuracy of the completed trial
    with the best final validation accuracy (0 when none completed)."""  # fmt: skip
    epochs, best, stopped, n, truncated = 0, (-1.0, 0.0), 0, 0, True
    for i, r in enumerate(records):
        if trials is not None and i >= trials:
            truncated = False
            break
        if budget is not None and epochs + r["epochs"] > budget:
            epochs = budget
            truncated = False
            break
        epochs += r["epochs"]
        n += 1
        if not r["completed"]:
            stopped += 1
        elif r["val"] > best[0]:
            best = (r["val"], r["test"])
    else:
        truncated = budget is not None  # the stream ran out before the budget did
    return {"best_val": best[0], "best_test": best[1], "epochs": epochs, "stopped": stopped,
            "trials": n, "stream_exhausted": truncated and budget is not None}  # fmt: skip


def _se(xs: list[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")


def _mean_se(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.4f} ± {_se(xs):.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first-seed .. first-seed+seeds-1 (tune on 100+, report on 0)",
    )
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument(
        "--stream",
        type=float,
        default=1.6,
        help="configurations per seed, as a multiple of --trials: the epoch-matched "
        "comparison lets a thriftier method run more of them",
    )
    ap.add_argument(
        "--orders",
        type=int,
        default=8,
        help="orderings of each seed's configurations for the epoch-matched "
        "comparison (the first is the original order)",
    )
    ap.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.5, 0.75, 1.0],
        help="epoch budgets, as fractions of MedianPruner's epochs",
    )
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument(
        "--generator",
        default="shared",
        help="shared (the same configurations for every method) | sobol | noisy_ei",
    )
    ap.add_argument(
        "--cache",
        action="store_true",
        help="train the seeds' configurations once first and replay the curves",
    )
    ap.add_argument(
        "--ray-trials-only",
        action="store_true",
        help="Ray Tune runs the trial budget only, not the longer stream (each Ray "
        "trial costs seconds of actor overhead on a small machine)",
    )
    ap.add_argument("--optuna-sampler", default="random", choices=["random", "tpe"],
                    help="Optuna's sampler when --generator is not shared")  # fmt: skip
    ap.add_argument("--workload", default="mlp", choices=list(WORKLOADS),
                    help="mlp (constant rate) | warmup (warm-up + cosine, noisy labels: "
                    "curves cross)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--quality", default="test", choices=["test", "val"],
                    help="quality of the chosen trial: its test accuracy (default) or its "
                    "final validation accuracy, the full-curve value every method optimizes "
                    "(free of the test set's sampling noise in the choice)")  # fmt: skip
    ap.add_argument("--resume", action="store_true",
                    help="read --json first and only run the (method, seed) pairs it lacks; "
                    "the tables cover all of --methods")  # fmt: skip
    args = ap.parse_args(argv)  # fmt: skip
    set_workload(args.workload)
    global OPTUNA_SAMPLER
    OPTUNA_SAMPLER = args.optuna_sampler
    logging.getLogger("assay").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    stream = max(args.trials, round(args.trials * args.stream))
    if args.cache:
        for seed in seeds:
            print(f"cache seed {seed}: trained {build_cache(shared_configs(seed, stream))} "
                  f"new configuration(s)", file=sys.stderr)  # fmt: skip
    raw: dict[str, dict[int, list[dict]]] = {}
    if args.resume and args.json and args.json.exists():
        raw = {m: {int(s): v for s, v in d.items()}
               for m, d in json.loads(args.json.read_text()).items()}  # fmt: skip
    for method in args.methods:
        for seed in seeds:
            if seed in raw.get(method, {}):
                continue
            t0 = time.perf_counter()
            try:
                n = args.trials if method == "ray_asha" and args.ray_trials_only else stream
                recs = METHODS[method](seed, n, args.generator)
            except Exception as e:  # report and keep going (e.g. Ray cannot start here)
                print(f"{method} seed {seed}: failed: {type(e).__name__}: {e}", file=sys.stderr)
                break
            raw.setdefault(method, {})[seed] = recs
            if args.json:  # after every run: a long run interrupted keeps what it measured
                _dump(raw, args.json)
            r = summarize(recs, trials=args.trials)
            print(f"{method:17s} seed {seed}: test {r['best_test']:.4f} epochs {r['epochs']:4d} "
                  f"stopped {r['stopped']:3d} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)  # fmt: skip
    raw = {m: {s: raw[m][s] for s in seeds if s in raw[m]} for m in args.methods if m in raw}
    orders: dict[str, dict[int, list[list[dict]]]] = {}
    if args.generator == "shared" and "optuna_median" in raw:
        orders = reordered(raw, seeds, stream, args.orders)
    elif "optuna_median" in raw:  # each method's own sequence, the run itself
        orders = {m: {s: [recs] for s, recs in d.items()} for m, d in raw.items()}
    print(report(raw, orders, seeds, args))
    return 0


def _dump(raw: dict[str, dict[int, list[dict]]], path: Path) -> None:
    path.write_text(json.dumps({m: {str(s): v for s, v in d.items()} for m, d in raw.items()},
                               indent=1))  # fmt: skip


def reordered(
    raw: dict[str, dict[int, list[dict]]], seeds: list[int], stream: int, n_orders: int
) -> dict[str, dict[int, list[list[dict]]]]:
    """Each re-orderable method on ``n_orders`` orderings of each seed's configurations (the
    first the original: the service run itself). Checks first that the direct replay of
    Assay's rules reproduces the service run trial for trial on the original order."""  # fmt: skip
    import random

    out: dict[str, dict[int, list[list[dict]]]] = {}
    for method, d in raw.items():
        for seed in seeds:
            if seed not in d:
                continue
            configs = shared_configs(seed, stream)
            if method == "none" or method in ASSAY_RULES:
                again = ordered_runs(method, configs, seed)
                same = [(r["epochs"], r["completed"]) for r in again] == [
                    (r["epochs"], r["completed"]) for r in d[seed]
                ]
                if not same:
                    raise RuntimeError(f"replay of {method} differs from the service run")
            runs = [d[seed]]
            for k in range(1, n_orders):
                perm = list(configs)
                random.Random(10_000 * seed + k).shuffle(perm)
                recs = ordered_runs(method, perm, seed)
                if recs is None:
                    break
                runs.append(recs)
            out.setdefault(method, {})[seed] = runs
    return out


def _same_trials_over_orderings(
    orders: dict[str, dict[int, list[list[dict]]]], seeds: list[int], n: int, key: str
) -> list[str]:
    """The same-trial-budget table averaged over every ordering of each seed's configurations
    (the first table reads the original order only: one ordering per seed is noisy)."""
    base = orders.get("none")
    if not base or not any(len(r) > 1 for d in orders.values() for r in d.values()):
        return []
    out = [
        f"\nSame trial budget ({n} trials), mean over the orderings of each seed (paired per "
        "ordering with no stopping, then mean ± SE over seeds):\n",
        "| method | orderings | best acc (mean ± SE) | % of no-stopping epochs | "
        "Δ acc vs no stopping (paired) |",
        "|---|---|---|---|---|",
    ]
    for m, d in orders.items():
        ss = [s for s in seeds if s in d and s in base]
        if not ss:
            continue
        acc, frac, delta = [], [], []
        for s in ss:
            k = min(len(d[s]), len(base[s]))
            mine = [summarize(d[s][i], trials=n) for i in range(k)]
            none = [summarize(base[s][i], trials=n) for i in range(k)]
            acc.append(statistics.fmean(r[key] for r in mine))
            frac.append(sum(r["epochs"] for r in mine) / sum(r["epochs"] for r in none))
            delta.append(statistics.fmean(a[key] - b[key] for a, b in zip(mine, none, strict=True)))
        k = min(len(d[ss[0]]), len(base[ss[0]]))
        out.append(f"| {m} | {k} | {_mean_se(acc)} | {100 * statistics.fmean(frac):.0f}% | "
                   f"{_mean_se(delta)} |")  # fmt: skip
    return out


def report(
    raw: dict[str, dict[int, list[dict]]],
    orders: dict[str, dict[int, list[list[dict]]]],
    seeds: list[int],
    args: Any,
) -> str:
    """The two tables: at the same trial budget, and at MedianPruner's epochs (paired)."""  # fmt: skip
    n = args.trials
    key = "best_val" if getattr(args, "quality", "test") == "val" else "best_test"
    what = ("final validation accuracy (the full-curve value the methods optimize)"
            if key == "best_val" else "test accuracy")  # fmt: skip
    lines = [f"\nquality: {what} of the completed trial with the best final validation accuracy",
             f"\nworkload {WORKLOAD}, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) x {n} trials x "
             f"{EPOCHS} epochs, "
             f"generator {args.generator}, stream of {max(n, round(n * args.stream))} "
             f"configurations per seed\n"]  # fmt: skip
    at_n = {m: {s: summarize(r, trials=n) for s, r in d.items()} for m, d in raw.items()}
    base = at_n.get("none")
    lines.append("Same trial budget (original order, every method through its own API):\n")
    lines.append(
        "| method | best acc (mean ± SE) | epochs (mean) | % of no-stopping epochs "
        "| trials stopped | Δ acc vs no stopping (paired) |"
    )
    lines.append("|---|---|---|---|---|---|")
    for m, d in at_n.items():
        ss = [s for s in seeds if s in d]
        acc = [d[s][key] for s in ss]
        ep = statistics.fmean(d[s]["epochs"] for s in ss)
        frac, delta = "—", "—"
        if base is not None and all(s in base for s in ss):
            frac = f"{100 * ep / statistics.fmean(base[s]['epochs'] for s in ss):.0f}%"
            delta = _mean_se([d[s][key] - base[s][key] for s in ss])
        st = statistics.fmean(d[s]["stopped"] for s in ss)
        lines.append(f"| {m} | {_mean_se(acc)} | {ep:.0f} | {frac} | {st:.1f} | {delta} |")
    lines.extend(_same_trials_over_orderings(orders, seeds, n, key))
    med = orders.get("optuna_median")
    if not med:
        return "\n".join(lines)
    lines.append(
        f"\nAt equal epochs: per seed and ordering of its configurations, the budget is a "
        f"fraction of the epochs MedianPruner spent on its first {n} trials in that order; each "
        f"method runs the ordering until the budget is spent (a trial cut by the budget does "
        f"not count). Quality = mean over orderings; Δ = paired difference to MedianPruner per "
        f"seed, mean ± SE over seeds (wins/ties/losses over seeds).\n"
    )
    head = "| method | orderings | " + " | ".join(
        f"acc at {f:g}× / Δ vs Median" for f in args.fractions) + " |"  # fmt: skip
    lines.append(head)
    lines.append("|---|---|" + "---|" * len(args.fractions))
    budgets = {s: [summarize(run, trials=n)["epochs"] for run in med[s]] for s in med}
    for m in raw:
        runs = orders.get(m, {})
        ss = [s for s in seeds if s in runs and s in med]
        if not ss:
            continue
        cells = []
        for f in args.fractions:
            q, dq = [], []
            for s in ss:
                k = min(len(runs[s]), len(med[s]))
                mine = [summarize(runs[s][i], budget=round(f * budgets[s][i]))[key]
                        for i in range(k)]  # fmt: skip
                theirs = [summarize(med[s][i], budget=round(f * budgets[s][i]))[key]
                          for i in range(k)]  # fmt: skip
                q.append(statistics.fmean(mine))
                dq.append(statistics.fmean(mine) - statistics.fmean(theirs))
            w = sum(x > 1e-9 for x in dq)
            lo = sum(x < -1e-9 for x in dq)
            cells.append(
                f"{statistics.fmean(q):.4f} / {_mean_se(dq)} ({w}/{len(ss) - w - lo}/{lo})"
            )
        k = min(len(runs[ss[0]]), len(med[ss[0]]))
        lines.append(f"| {m} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
