"""Workload: tune DP-SGD hyperparameters of the tabular LM at a fixed ε with Assay.

Canonical entry point ``assay.generative.workloads.dp_tabular:run`` (the old
``assay.generative.tabular.job:run`` is an alias). The model, training and metrics are
:mod:`assay.generative.tabular`; this module owns the job's parameters (:data:`DEFAULTS`), the
search space (:data:`SEARCH_SPACE`), the objective (:data:`OBJECTIVE`) and :func:`run`.

``run(params) -> metrics`` trains one model at the fixed ``epsilon``/``delta`` with the given
hyperparameters, reports progress with ``assay.report(step=epoch, ...)`` and returns the utility
metrics. An Assay experiment over :data:`SEARCH_SPACE` (the JSON parameter form the REST API
and :meth:`SearchSpace.from_dict` accept) minimising :data:`OBJECTIVE` finds the learning rate,
clipping norm, batch size, epochs and width that give the best synthetic data *at that ε*:
every trial has the same privacy guarantee, so the comparison is fair. Its parameters are a
plain dict of defaults rather than a
:class:`~assay.generative.workloads.common.WorkloadConfig`: it trains on CPU threads
(``threads``), uses no helper-model cache, reports every epoch, and names a bad parameter as
``params.<name>`` in its errors.

Privacy caveat: each trial is a separate DP-SGD run on the same private data, and choosing the
best of many runs is itself a release that leaks (Papernot & Steinke 2022). Tune on public or
proxy data (e.g. :func:`~assay.generative.tabular.data.ab_logs` with the same schema), or
account for the tuning; the default ``dataset`` here is a public table for that reason.

May import :mod:`assay.generative` (the tabular package, privacy accounting) and
``assay.report``; nothing of ``assay.service`` or ``assay.storage``.

Example:
    >>> from assay.platform.space import SearchSpace
    >>> space = SearchSpace.from_dict(SEARCH_SPACE)
    >>> sorted(space.names)[:3]
    ['batch_size', 'd_model', 'dataset']
    >>> metrics = run({"epochs": 1, "n_rows": 500, "d_model": 16})       # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from assay.platform.errors import ValidationError

#: The tunable DP-SGD hyperparameters (and the fixed privacy target) in Assay's JSON form.
SEARCH_SPACE: dict[str, Any] = {
    "parameters": [
        {"name": "lr", "type": "float", "bounds": [3e-4, 3e-2], "log": True},
        {"name": "max_grad_norm", "type": "float", "bounds": [0.1, 10.0], "log": True},
        {"name": "batch_size", "type": "int", "bounds": [64, 1024], "log": True},
        {"name": "epochs", "type": "int", "bounds": [1, 20]},
        {"name": "d_model", "type": "choice", "values": [32, 64, 128], "ordered": True},
        {"name": "epsilon", "type": "fixed", "value": 3.0},
        {"name": "delta", "type": "fixed", "value": 1e-6},
        {"name": "dataset", "type": "fixed", "value": "ab_logs"},
    ],
    "parameter_constraints": [],
}
#: What the experiment optimises (held-out NLL in nats per row; lower is better).
OBJECTIVE: dict[str, Any] = {"metric": "heldout_nll", "minimize": True}

DEFAULTS: dict[str, Any] = {
    "epsilon": 3.0,
    "delta": 1e-6,
    "lr": 3e-3,
    "max_grad_norm": 1.0,
    "batch_size": 256,
    "epochs": 5,
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "dataset": "ab_logs",  # "ab_logs" (generated) or "rand_hie" (statsmodels)
    "n_rows": 20_000,  # rows of the table to use (ab_logs: generated; rand_hie: subsample)
    "test_fraction": 0.2,
    "n_synthetic": 5_000,
    "target": None,  # TSTR target column (default: last categorical column)
    "seed": 0,
    "threads": 1,
}


def _load(params: Mapping[str, Any]):
    from assay.generative.tabular.data import ab_logs, load_rand_hie, take

    name = params["dataset"]
    if name == "ab_logs":
        return ab_logs(int(params["n_rows"]), seed=int(params["seed"]) + 12345)
    if name == "rand_hie":
        schema, table = load_rand_hie()
        n = len(next(iter(table.values())))
        if params["n_rows"] and int(params["n_rows"]) < n:
            idx = np.random.default_rng(int(params["seed"])).permutation(n)[: int(params["n_rows"])]
            table = take(table, idx)
        return schema, table
    raise ValidationError(
        f"dataset must be 'ab_logs' or 'rand_hie', got {name!r}", field="params.dataset"
    )


def run(params: Mapping[str, Any]) -> dict[str, float]:
    """Train the DP tabular LM with ``params`` and return its utility and privacy metrics.

    Args:
        params: Any of :data:`DEFAULTS`' keys (unknown keys are rejected).

    Returns:
        ``heldout_nll`` (the objective), ``tv_1way``, ``tv_2way``, ``tstr_accuracy``,
        ``trtr_accuracy``, ``epsilon_prv``, ``epsilon_rdp``, ``epsilon_rdp2``,
        ``noise_multiplier``, ``recon_rmse_over_diameter`` (the RDP reconstruction bound
        relative to each numeric column's range, minimum over columns), ``train_seconds``.
    """
    import torch

    import assay
    from assay.generative.privacy import reconstruction_report
    from assay.generative.tabular.data import split_rows
    from assay.generative.tabular.metrics import marginal_tv, tstr_accuracy
    from assay.generative.tabular.schema import RowCodec
    from assay.generative.tabular.train import TrainConfig, fit_tabular_lm

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValidationError(
            f"unknown parameter(s) {unknown}; known: {sorted(DEFAULTS)}",
            field=f"params.{unknown[0]}",
        )
    p = {**DEFAULTS, **params}
    torch.set_num_threads(int(p["threads"]))
    t0 = time.perf_counter()
    schema, table = _load(p)
    codec = RowCodec(schema)
    codes = codec.to_codes(table)
    train_idx, test_idx = split_rows(codes.shape[0], float(p["test_fraction"]), int(p["seed"]))
    train, test = codes[train_idx], codes[test_idx]
    if p["target"] is None:
        target = max(i for i, c in enumerate(schema.columns) if c.kind == "categorical")
    else:
        target = schema.index(p["target"])
    cfg = TrainConfig(
        epsilon=float(p["epsilon"]),
        delta=float(p["delta"]),
        max_grad_norm=float(p["max_grad_norm"]),
        batch_size=int(p["batch_size"]),
        epochs=float(p["epochs"]),
        lr=float(p["lr"]),
        d_model=int(p["d_model"]),
        n_layers=int(p["n_layers"]),
        n_heads=int(p["n_heads"]),
        seed=int(p["seed"]),
    )

    def on_epoch(epoch: int, loss: float) -> None:
        if math.isfinite(loss):
            assay.report(step=epoch, train_nll=loss)
        assay.heartbeat()

    fitted = fit_tabular_lm(codec, codec.codes_to_tokens(train), cfg, on_epoch=on_epoch)
    test_tokens = codec.codes_to_tokens(test)
    synth = codec.tokens_to_codes(fitted.sample_tokens(int(p["n_synthetic"]), seed=int(p["seed"])))
    tstr = tstr_accuracy(synth, train, test, codec.sizes, target)
    priv = fitted.privacy
    eps2 = priv.epsilon_rdp2 if priv else math.inf
    recon = reconstruction_report(eps2, schema)
    numeric = [v["rmse_over_diameter"] for v in recon.columns.values() if v["kind"] == "numeric"]
    metrics = {
        "heldout_nll": fitted.nll(test_tokens),
        "tv_1way": marginal_tv(test, synth, codec.sizes, 1)["mean"],
        "tv_2way": marginal_tv(test, synth, codec.sizes, 2)["mean"],
        "tstr_accuracy": tstr["tstr"],
        "trtr_accuracy": tstr["trtr"],
        "majority_accuracy": tstr["majority"],
        "train_seconds": fitted.train_seconds,
        "total_seconds": time.perf_counter() - t0,
    }
    if priv is not None:
        metrics.update(
            epsilon_prv=priv.epsilon_prv,
            epsilon_rdp=priv.epsilon_rdp,
            epsilon_rdp2=priv.epsilon_rdp2,
            noise_multiplier=priv.noise_multiplier,
            recon_rmse_over_diameter=min(numeric) if numeric else math.inf,
        )
    final = {k: v for k, v in metrics.items() if math.isfinite(v)}
    assay.report(step=len(fitted.epoch_losses), **final)
    return metrics
