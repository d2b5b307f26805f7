"""The experiment page's analysis panels: a registry, so new analyses plug in without touching
the page.

A :class:`Panel` names itself, says when it applies, declares its controls (rendered as
selects; their values arrive as query parameters), and computes a :class:`PanelResult` — a
Plotly figure, an *empty state* (not enough data yet: say what to do next) or an *error card*.
:func:`run_panel` never raises: whatever goes wrong inside an analysis becomes an error card
on its panel and the rest of the page keeps working (the pattern of Ax's ``ax/analysis``).

Extending (the A/B arm-effects panel below is built this way)::

    from assay.dashboards.panels import Panel, PanelResult, register_panel

    def arm_effects(ctx):
        ...  # read ctx.experiment, maybe ctx.model(); return PanelResult(figure=...)

    register_panel(
        Panel("arm-effects", "Arm effects", "Effect of each arm vs. the control, with 95% CIs.",
              arm_effects, applies=lambda exp: any(t.is_batch for t in exp.trials),
              wide=True),
        before="slices",
    )
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from assay.dashboards import charts
from assay.dashboards.data import ModelCache, fmt_value
from assay.dashboards.jobs import JobsView
from assay.platform.analysis import arm_effects
from assay.platform.diagnostics import (
    AnalysisModel,
    InsufficientDataError,
    contour,
    feasibility,
    loo_cross_validation,
    recommended_arm,
    slices,
    sobol_importance,
)
from assay.platform.early_stopping import rule_line
from assay.platform.errors import AssayError, NotFoundError, StorageBusyError, ValidationError
from assay.platform.experiment import Experiment
from assay.platform.pareto_report import pareto_report
from assay.platform.space import ChoiceParameter
from assay.platform.stopping import experiment_stopping

log = logging.getLogger("assay.dashboards")


@dataclass(frozen=True)
class Control:
    """A select above a panel: ``options`` are ``(value, label)`` pairs."""

    name: str
    label: str
    options: list[tuple[str, str]]
    default: str


@dataclass
class PanelContext:
    """What a panel may read: the experiment snapshot, its control values and the cached
    analysis model."""

    experiment: Experiment
    params: Mapping[str, str]
    models: ModelCache
    jobs: JobsView
    project: str | None
    #: The store, for panels that read more than the snapshot (reports); ``None`` in tests
    #: that build a context by hand.
    store: Any = None

    def model(self) -> AnalysisModel:
        return self.models.get(self.experiment)

    def choice(self, control: Control) -> str:
        v = self.params.get(control.name, control.default)
        return v if v in {o[0] for o in control.options} else control.default


@dataclass
class PanelResult:
    """A figure, or an empty state / error card (``title`` + ``message``), plus key facts."""

    figure: dict[str, Any] | None = None
    empty: dict[str, str] | None = None
    error: dict[str, str] | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "empty": self.empty,
            "error": self.error,
            "facts": [{"label": k, "value": v} for k, v in self.facts],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Panel:
    """One analysis card of the experiment page."""

    key: str
    title: str
    description: str
    compute: Callable[[PanelContext], PanelResult]
    controls: Callable[[Experiment], list[Control]] = lambda exp: []
    applies: Callable[[Experiment], bool] = lambda exp: True
    wide: bool = False
    model_based: bool = True


# -- controls ----------------------------------------------------------------------------------
def _metric_control(exp: Experiment) -> Control:
    ms = exp.config.modelled_metrics
    return Control("metric", "Metric", [(m, m) for m in ms], ms[0])


def _ordered_params(exp: Experiment) -> list[str]:
    return [
        p.name
        for p in exp.search_space.tunable
        if not (isinstance(p, ChoiceParameter) and p.is_one_hot)
    ]


def _contour_controls(exp: Experiment) -> list[Control]:
    names = _ordered_params(exp)
    opts = [(n, n) for n in names]
    views = [("mean", "posterior mean"), ("sd", "uncertainty (SD)")]
    if exp.config.outcome_constraints:
        views.append(("feasibility", "P(feasible)"))
    return [
        Control("x", "x", opts, names[0]),
        Control("y", "y", opts, names[1] if len(names) > 1 else names[0]),
        _metric_control(exp),
        Control("view", "Show", views, "mean"),
    ]


# -- the built-in panels -----------------------------------------------------------------------
def _model_notes(am: AnalysisModel) -> list[str]:
    return list(am.notes)


def slices_panel(ctx: PanelContext) -> PanelResult:
    am = ctx.model()
    metric = ctx.choice(_metric_control(ctx.experiment))
    rec = recommended_arm(am)
    ref = rec["parameters"] if rec else None
    curves = slices(am, reference=ref)
    facts = []
    if rec is not None:
        facts.append(("through the recommended arm", rec["arm_name"]))
    return PanelResult(
        figure=charts.slices_figure(curves, metric, reference=ref),
        facts=facts,
        notes=_model_notes(am),
    )


def contour_panel(ctx: PanelContext) -> PanelResult:
    exp = ctx.experiment
    controls = {c.name: ctx.choice(c) for c in _contour_controls(exp)}
    am = ctx.model()
    g = contour(am, controls["x"], controls["y"], metric=controls["metric"])
    rec = recommended_arm(am)
    fig = charts.contour_figure(g, controls["view"], rec["parameters"] if rec else None)
    held = ", ".join(f"{k}={fmt_value(v)}" for k, v in g.reference.items())
    return PanelResult(figure=fig, facts=[("others held at", held or "—")])


def model_fit_panel(ctx: PanelContext) -> PanelResult:
    am = ctx.model()
    metric = ctx.choice(_metric_control(ctx.experiment))
    if metric not in am.fitted.metrics:
        return PanelResult(
            empty={
                "title": f"No model for {metric} yet",
                "message": f"{metric} needs at least two completed observations.",
            }
        )
    cv = loo_cross_validation(am, [metric])[metric]
    return PanelResult(
        figure=charts.cross_validation_figure(cv),
        facts=[
            ("R²", fmt_value(cv.r2, 3)),
            ("inside 95% interval", f"{100 * cv.coverage95:.0f}%"),
            ("observations", str(cv.n)),
        ],
        notes=_model_notes(am),
    )


def importance_panel(ctx: PanelContext) -> PanelResult:
    am = ctx.model()
    metric = ctx.choice(_metric_control(ctx.experiment))
    if metric not in am.fitted.metrics:
        return PanelResult(
            empty={
                "title": f"No model for {metric} yet",
                "message": f"{metric} needs at least two completed observations.",
            }
        )
    imp = sobol_importance(am, metric)
    top = max(range(len(imp.parameters)), key=lambda i: imp.total_order[i])
    return PanelResult(
        figure=charts.importance_figure(imp),
        facts=[("most influential", imp.parameters[top]), ("samples", str(imp.n_samples))],
    )


def feasibility_panel(ctx: PanelContext) -> PanelResult:
    exp = ctx.experiment
    if not exp.config.outcome_constraints:
        return PanelResult(
            empty={
                "title": "No outcome constraints",
                "message": (
                    f"This experiment only optimizes {exp.config.objective.name}. Outcome "
                    "constraints such as 'latency_ms <= 20' are set when an experiment is "
                    "created; the model then estimates how likely each arm meets them."
                ),
            }
        )
    am = ctx.model()
    f = feasibility(am)
    if not f.constraints:
        return PanelResult(
            empty={
                "title": "Constrained metrics not observed yet",
                "message": "Report the constrained metrics with each trial to see feasibility.",
            }
        )
    likely = sum(1 for p in f.joint if p >= 0.9)
    return PanelResult(
        figure=charts.feasibility_figure(f),
        facts=[("arms feasible with P ≥ 0.9", f"{likely} of {len(f.joint)}")],
    )


def _effects_metric_control(exp: Experiment) -> Control:
    """Every metric; with several objectives they come first, labelled with their direction,
    so the panel shows the arm effects objective by objective."""
    config = exp.config
    ms = config.metric_names
    if not config.is_multi_objective:
        return Control("metric", "Metric", [(m, m) for m in ms], ms[0])
    direction = {o.name: "↓" if o.minimize else "↑" for o in config.objectives}
    opts = [(m, f"{m} (objective {direction[m]})" if m in direction else m) for m in ms]
    return Control("metric", "Objective / metric", opts, ms[0])


def arm_effects_panel(ctx: PanelContext) -> PanelResult:
    """Each arm's % effect against the control (:func:`assay.platform.analysis.arm_effects`)."""
    exp = ctx.experiment
    metric = ctx.choice(_effects_metric_control(exp))
    report = arm_effects(exp)
    if not any(not a.is_control and metric in a.metrics for a in report.arms):
        return PanelResult(
            empty={
                "title": "No effects to show yet",
                "message": f"Complete a batch trial that reports {metric} for the control and "
                "at least one other arm; effects are measured against the control of the same "
                "batch.",
            },
            notes=report.notes,
        )
    facts = [("control", report.control_arm or "—")]
    config = exp.config
    objective = next((o for o in config.objectives if o.name == metric), None)
    p_front: dict[str, float | None] | None = None
    notes = list(report.notes)
    if config.is_multi_objective:
        # "best" is a single-objective notion: with several, rank arms by P(on the front)
        front = _pareto(ctx)
        if front is not None:
            p_front = {a.arm_name: a.probability_front for a in front.arms}
            ranked_front = [a for a in front.arms if a.probability_front is not None]
            facts.append(("on the front (model)", f"{len(front.front)} of {len(front.arms)}"))
            if ranked_front:
                lead = max(ranked_front, key=lambda a: a.probability_front or 0.0)
                facts.append(
                    (
                        "most likely on the front",
                        f"{lead.arm_name} (P = {lead.probability_front:.2f})",
                    )
                )
        if objective is None:
            notes.append(f"{metric} is not one of the objectives; pick an objective to compare.")
    else:
        ranked = [a for a in report.arms if a.probability_best is not None]
        if ranked:
            lead = max(ranked, key=lambda a: a.probability_best or 0.0)
            facts.append(("most likely best", f"{lead.arm_name} (P = {lead.probability_best:.2f})"))
    facts.append(("batches", str(len({t for a in report.arms for t in a.trial_ids}))))
    figure = charts.arm_effects_figure(
        report, metric, objective if config.is_multi_objective else None, p_front
    )
    return PanelResult(figure=figure, facts=facts, notes=notes)


def _objective_controls(exp: Experiment) -> list[Control]:
    names = exp.config.objective_names
    opts = [(m, m) for m in names]
    return [Control("x", "x", opts, names[0]), Control("y", "y", opts, names[1 % len(names)])]


def _pareto(ctx: PanelContext) -> Any:
    """The Pareto report, or ``None`` before any arm has every objective observed."""
    try:
        return pareto_report(ctx.experiment)
    except NotFoundError:
        return None


_NO_FRONT = {
    "title": "No front yet",
    "message": "Complete a trial that reports every objective; the Pareto front and its "
    "hypervolume fill in by themselves.",
}


def pareto_panel(ctx: PanelContext) -> PanelResult:
    """Two objectives against each other (:func:`assay.dashboards.charts.pareto_figure`)."""
    x, y = (ctx.choice(c) for c in _objective_controls(ctx.experiment))
    report = _pareto(ctx)
    if report is None:
        return PanelResult(empty=_NO_FRONT)
    facts = [
        ("arms on the front", f"{len(report.front)} of {len(report.arms)}"),
        ("hypervolume (model)", fmt_value(report.hypervolume)),
        ("hypervolume (observed)", fmt_value(report.observed_hypervolume)),
    ]
    ref = ", ".join(
        f"{m} {fmt_value(r['value'])}{' (inferred)' if r['inferred'] else ''}"
        for m, r in report.reference_point.items()
    )
    facts.append(("reference point", ref))
    return PanelResult(figure=charts.pareto_figure(report, x, y), facts=facts, notes=report.notes)


def hypervolume_panel(ctx: PanelContext) -> PanelResult:
    """The hypervolume trace (:func:`assay.dashboards.charts.hypervolume_figure`)."""
    report = _pareto(ctx)
    if report is None:
        return PanelResult(empty=_NO_FRONT)
    return PanelResult(figure=charts.hypervolume_figure(report), notes=report.notes)


def _colour_control(exp: Experiment) -> Control:
    ms = exp.config.metric_names
    return Control("colour", "Colour by", [(m, m) for m in ms], ms[0])


def parcoords_panel(ctx: PanelContext) -> PanelResult:
    """Parallel coordinates of the completed arms coloured by one metric
    (:func:`assay.dashboards.charts.parcoords_figure`)."""
    exp = ctx.experiment
    colour = ctx.choice(_colour_control(exp))
    fig = charts.parcoords_figure(exp, colour)
    drawn = len(fig["data"][0]["line"]["color"])
    if not drawn:
        return PanelResult(
            empty={
                "title": "Nothing to compare yet",
                "message": "Each completed arm that reports every metric becomes one line "
                "across its parameters and metrics.",
            }
        )
    left_out = charts.parcoords_left_out(exp, fig)
    notes = []
    if left_out:
        notes.append(
            f"{left_out} completed arm(s) miss a metric and are not drawn (a line needs "
            "every axis)."
        )
    return PanelResult(figure=fig, facts=[("arms drawn", str(drawn))], notes=notes)


PANELS: list[Panel] = [
    Panel(
        "pareto",
        "Pareto front",
        "Two objectives against each other: the model's front (posterior means with 95% "
        "intervals) as a step line, dominated arms greyed, infeasible arms crossed; dashed: "
        "the reference point.",
        pareto_panel,
        controls=_objective_controls,
        applies=lambda exp: exp.config.is_multi_objective,
        wide=True,
    ),
    Panel(
        "parcoords",
        "Parallel coordinates",
        "One line per completed arm across its parameters and metrics (objectives first, "
        "↑ maximized, ↓ minimized), coloured by the metric you choose: yellow is better; "
        "grey lines violate a constraint. Drag along an axis to filter lines, drag its title "
        "to reorder.",
        parcoords_panel,
        controls=lambda exp: [_colour_control(exp)],
        applies=lambda exp: exp.config.is_multi_objective,
        wide=True,
        model_based=False,
    ),
    Panel(
        "hypervolume",
        "Hypervolume per trial",
        "The hypervolume dominated by the front of the arms observed so far, observed and "
        "model-estimated, against the same reference point: it grows as the front improves.",
        hypervolume_panel,
        applies=lambda exp: exp.config.is_multi_objective,
    ),
    Panel(
        "arm-effects",
        "Arm effects vs. control",
        "Each arm's % change against the control of the same batch (delta-method 95% CI, "
        "pooled over batches) and the model's estimate, coloured by the probability that the "
        "arm meets every outcome constraint.",
        arm_effects_panel,
        controls=lambda exp: [_effects_metric_control(exp)],
        applies=lambda exp: (
            exp.config.status_quo is not None and any(t.is_batch for t in exp.trials)
        ),
        wide=True,
    ),
    Panel(
        "slices",
        "Slices of the model",
        "What the model predicts along each parameter, the others held at the recommended "
        "arm (mean and 95% credible band).",
        slices_panel,
        controls=lambda exp: [_metric_control(exp)],
        wide=True,
    ),
    Panel(
        "contour",
        "Response surface",
        "The model's prediction over two parameters, the others held at the recommended arm.",
        contour_panel,
        controls=_contour_controls,
        applies=lambda exp: len(_ordered_params(exp)) >= 2,
    ),
    Panel(
        "model-fit",
        "Model fit (leave-one-out)",
        "Each arm predicted from all the others vs. what was observed. Points near the "
        "diagonal, about 95% of them within their intervals, mean the model can be trusted.",
        model_fit_panel,
        controls=lambda exp: [_metric_control(exp)],
    ),
    Panel(
        "importance",
        "Parameter importance",
        "Sobol' sensitivity of the model's prediction: how much of its variation each "
        "parameter explains, alone and with interactions.",
        importance_panel,
        controls=lambda exp: [_metric_control(exp)],
    ),
    Panel(
        "feasibility",
        "Feasibility",
        "The model's probability that each arm meets each outcome constraint.",
        feasibility_panel,
    ),
]


def _curve_metric_control(exp: Experiment) -> Control:
    es = exp.config.early_stopping
    first = (es.metric if es is not None else None) or exp.config.objective.name
    ms = [first, *(m for m in exp.config.metric_names if m != first)]
    return Control("metric", "Metric", [(m, m) for m in ms], first)


def learning_curves_panel(ctx: PanelContext) -> PanelResult:
    """Every trial's reported curve of one metric, the early-stopping rule's line, where
    trials were stopped, and the experiment-level stopping recommendation as facts."""
    exp = ctx.experiment
    if ctx.store is None:
        return PanelResult(empty={"title": "No curves", "message": "No store to read from."})
    metric = ctx.choice(_curve_metric_control(exp))
    curves = ctx.store.experiment_curves(exp)
    if not any(c.points.get(metric) for c in curves):
        return PanelResult(
            empty={
                "title": f"No learning curves of {metric} yet",
                "message": "Jobs report curve points with assay.report(step=..., "
                f"{metric}=...); loops that run their own trials with client.report(...).",
            }
        )
    es = exp.config.early_stopping
    line: list[tuple[int, float]] = []
    facts: list[tuple[str, str]] = []
    if es is not None:
        if (es.metric or exp.config.objective.name) == metric:
            line = rule_line(es, exp.config.objective, curves)
        ramp = (f", ramped from {es.ramp_from} of {es.min_curves} curves"
                if es.ramp_from is not None and es.ramp_from < es.min_curves else "")  # fmt: skip
        facts.append(("early stopping", f"{es.strategy}{ramp}"))
    stopped = sum(1 for c in curves if c.state == "early_stopped")
    facts.append(("stopped early", f"{stopped} of {len(curves)} trials"))
    decision = experiment_stopping(exp)
    verdict = "done" if decision.done else "keep going"
    facts.append((f"experiment ({decision.rule} rule)", verdict))
    name = f"{es.strategy} rule" if es is not None else ""
    return PanelResult(
        figure=charts.learning_curves_figure(curves, metric, line, name),
        facts=facts,
        notes=[f"Stopping: {decision.reason}"],
    )


PANELS.insert(
    0,
    Panel(
        "learning-curves",
        "Learning curves",
        "Every trial's reported curve; early-stopped trials end in a red cross, the dashed "
        "line is the early-stopping rule at each step.",
        learning_curves_panel,
        controls=lambda exp: [_curve_metric_control(exp)],
        applies=lambda exp: (
            exp.config.job is not None
            or exp.config.early_stopping is not None
            or exp.config.stopping is not None
        ),
        wide=True,
        model_based=False,
    ),
)


def register_panel(panel: Panel, *, before: str | None = None) -> None:
    """Add (or replace, by key) a panel; ``before`` places it ahead of another key."""
    global PANELS
    rest = [p for p in PANELS if p.key != panel.key]
    keys = [p.key for p in rest]
    at = keys.index(before) if before in keys else len(rest)
    PANELS = [*rest[:at], panel, *rest[at:]]


def panels_for(exp: Experiment) -> list[Panel]:
    return [p for p in PANELS if p.applies(exp)]


def get_panel(key: str) -> Panel | None:
    return next((p for p in PANELS if p.key == key), None)


def run_panel(panel: Panel, ctx: PanelContext) -> PanelResult:
    """Compute a panel; every failure becomes an empty state or an error card."""
    try:
        return panel.compute(ctx)
    except InsufficientDataError as e:
        more = max(1, e.details.get("needed", 3) - e.details.get("observations", 0))
        message = e.message[:1].upper() + e.message[1:]
        return PanelResult(
            empty={
                "title": "Not enough data for a model yet",
                "message": f"{message}. Complete {more} more trial{'s' if more > 1 else ''} "
                "and this panel fills in by itself.",
            }
        )
    except ValidationError as e:
        return PanelResult(
            error={"title": "This view cannot be drawn", "message": e.message, "kind": "input"}
        )
    except StorageBusyError:  # no model slot free: 503 + Retry-After, nothing cached
        raise
    except AssayError as e:
        return PanelResult(
            error={
                "title": "The model could not be fitted",
                "message": f"{e.message}. The data charts above are unaffected; the next "
                "completed trial triggers a new fit.",
                "kind": e.code,
            }
        )
    except Exception as e:
        log.exception("dashboard panel %s failed", panel.key)
        return PanelResult(
            error={
                "title": "This analysis failed",
                "message": f"{type(e).__name__}: {e}. The rest of the page is unaffected; the "
                "server log has the details.",
                "kind": "internal",
            }
        )
