"""HTML tables for notebooks: the ``_repr_html_`` of experiments, trials, the best arm, arm
effects and the Pareto front (Jupyter shows them instead of the dataclass repr).

Pure formatting over duck-typed domain objects (no imports of the types, so the domain
modules can call in here without a cycle); every value is escaped.

May import: the standard library.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

_STYLE = "border-collapse:collapse;font-size:12px;font-family:ui-sans-serif,system-ui,sans-serif"
_CELL = "padding:2px 8px;border-bottom:1px solid #eef0f3;text-align:left"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v) if v is not None else "—"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """An escaped HTML table."""
    head = "".join(f"<th style='{_CELL}'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL}'>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    cap = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>"
    return f"<table style='{_STYLE}'>{cap if caption else ''}<tr>{head}</tr>{body}</table>"


def _obs(trial: Any) -> str:
    return "; ".join(
        f"{m}={o.mean:.4g}" + (f"±{o.sem:.2g}" if o.sem is not None else "")
        for obs in trial.observations.values()
        for m, o in obs.items()
    )


def trial_html(trial: Any) -> str:
    rows = [
        (trial.index, trial.state.value, trial.generator, a.name, a.parameters, _obs(trial))
        for a in trial.arms[:1]
    ]
    caption = f"Trial {trial.id} (#{trial.index})"
    return table(["index", "state", "generator", "arm", "parameters", "observations"], rows,
                 caption)  # fmt: skip


def experiment_html(exp: Any, max_trials: int = 50) -> str:
    cfg = exp.config
    obj = cfg.objective
    facts = [
        ("status", exp.status.value),
        ("objective", f"{'minimize' if obj.minimize else 'maximize'} {obj.name}"),
        ("constraints", ", ".join(str(c) for c in cfg.outcome_constraints) or "—"),
        ("parameters", ", ".join(cfg.search_space.names)),
        ("generator", cfg.generator),
        ("trials", len(exp.trials)),
    ]
    head = table(["", ""], facts, f"Experiment {exp.id}: {cfg.name}")
    shown = exp.trials[-max_trials:]
    rows = [
        (t.index, t.state.value, t.generator, t.arms[0].parameters if len(t.arms) == 1
         else f"{len(t.arms)} arms", _obs(t))
        for t in shown
    ]  # fmt: skip
    more = len(exp.trials) - len(shown)
    caption = f"Trials (last {len(shown)} of {len(exp.trials)})" if more else "Trials"
    return head + table(["index", "state", "generator", "parameters", "observations"], rows,
                        caption)  # fmt: skip


def best_html(best: Any) -> str:
    rows = [(m, e.mean, e.lower, e.upper, e.observed_mean) for m, e in best.estimates.items()]
    caption = (
        f"Best arm {best.arm_name}: {_fmt(best.parameters)} "
        f"(P(feasible)={best.probability_feasible:.2f}"
        f"{'' if best.model_based else ', observed means'})"
    )
    return table(["metric", "estimate", "95% lower", "95% upper", "observed"], rows, caption)


def effects_html(report: Any) -> str:
    rows = []
    for arm in report.arms:
        for m, eff in arm.metrics.items():
            obs = getattr(eff, "observed", None)
            rows.append((arm.arm_name, "control" if arm.is_control else "", m,
                         getattr(obs, "effect", None), getattr(obs, "lower", None),
                         getattr(obs, "upper", None), arm.probability_best))  # fmt: skip
    return table(["arm", "", "metric", "effect %", "lower", "upper", "P(best)"], rows,
                 f"Effects vs. control {report.control_arm}")  # fmt: skip


def pareto_html(report: Any) -> str:
    """The arms of a Pareto report (:class:`~assay.platform.pareto_report.ParetoReport`), those
    on the model's front first: each objective's estimate with its 95% interval (the posterior,
    or the observed mean without a model), ``P(on the front)`` and ``P(feasible)``."""
    names = [o["name"] for o in report.objectives]

    def estimate(arm: Any, m: str) -> str:
        e = arm.estimates.get(m)
        if e is None:
            return "—"
        if e.lower is None or e.upper is None:
            return _fmt(e.mean)
        return f"{_fmt(e.mean)} [{_fmt(e.lower)}, {_fmt(e.upper)}]"

    rows = [
        (a.arm_name, "yes" if a.on_front else "", a.parameters,
         *(estimate(a, m) for m in names), a.probability_front, a.probability_feasible)
        for a in report.arms
    ]  # fmt: skip
    heads = [f"{o['name']} ({'min' if o['minimize'] else 'max'})" for o in report.objectives]
    hv = report.hypervolume if report.hypervolume is not None else report.observed_hypervolume
    caption = (
        f"Pareto front of experiment {report.experiment_id}: {len(report.front)} of "
        f"{len(report.arms)} arms, hypervolume {_fmt(hv)}"
        f"{'' if report.model_based else ' (observed means, no model yet)'}"
    )
    return table(["arm", "on front", "parameters", *heads, "P(on front)", "P(feasible)"], rows,
                 caption)  # fmt: skip
