"""Plotly figures (plain dicts) for the model panels, in one restrained visual style.

Observed data are drawn in ink/indigo, what the model believes in amber, so a reader can tell
at a glance which is which on every chart. The browser renders the dicts with the vendored
Plotly.js; nothing here imports plotly.
"""

from __future__ import annotations

import html
import math
from typing import Any

from assay.platform.analysis import Z95
from assay.platform.diagnostics import (
    ContourGrid,
    CrossValidation,
    Feasibility,
    Importance,
    SliceCurve,
)

INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#eef0f3"
ACCENT = "#4f46e5"
MODEL = "#d97706"
MODEL_BAND = "rgba(217, 119, 6, 0.16)"
GOOD = "#059669"
BAD = "#dc2626"
INFEASIBLE = "#cbd5e1"
SERIES = ["#4f46e5", "#0891b2", "#db2777", "#65a30d", "#7c3aed", "#ea580c"]
FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", Arial, sans-serif'


def axis(title: str = "", **kw: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 12, "color": MUTED}},
        "gridcolor": GRID,
        "zerolinecolor": GRID,
        "linecolor": "#d1d5db",
        "tickfont": {"size": 11, "color": MUTED},
        "automargin": True,
        **kw,
    }


def layout(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "font": {"family": FONT, "size": 12, "color": INK},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 56, "r": 16, "t": 12, "b": 44},
        "hovermode": "closest",
        "hoverlabel": {"font": {"family": FONT, "size": 12}, "bgcolor": "white"},
        "legend": {
            "traceorder": "normal",
            "orientation": "h",
            "x": 0,
            "y": 1.02,
            "yanchor": "bottom",
            "font": {"size": 11, "color": MUTED},
        },
        "showlegend": True,
    }
    base.update(kw)
    return base


def _axis_type(log: bool) -> dict[str, Any]:
    return {"type": "log"} if log else {}


def _finite(xs: list[float]) -> list[float | None]:
    return [x if x is not None and math.isfinite(x) else None for x in xs]


def band(x: list[Any], lower: list[float], upper: list[float], name: str, **kw: Any) -> list:
    """Two traces filling the area between ``lower`` and ``upper`` (legend on the second)."""
    return [
        {
            "type": "scatter", "x": x, "y": _finite(lower), "mode": "lines",
            "line": {"width": 0, "color": MODEL_BAND}, "hoverinfo": "skip", "showlegend": False,
            **kw,
        },
        {
            "type": "scatter", "x": x, "y": _finite(upper), "mode": "lines", "fill": "tonexty",
            "fillcolor": MODEL_BAND, "line": {"width": 0, "color": MODEL_BAND}, "name": name,
            "hoverinfo": "skip", **kw,
        },
    ]  # fmt: skip


def cross_validation_figure(cv: CrossValidation) -> dict[str, Any]:
    """Predicted (leave-one-out) vs observed, with 95% intervals both ways and ``y = x``."""
    lo = min(
        min(cv.observed),
        min(p - Z95 * s for p, s in zip(cv.predicted, cv.predicted_sd, strict=True)),
    )
    hi = max(
        max(cv.observed),
        max(p + Z95 * s for p, s in zip(cv.predicted, cv.predicted_sd, strict=True)),
    )
    pad = 0.04 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    err_y = [Z95 * s if s is not None else 0.0 for s in cv.observed_sem]
    return {
        "data": [
            {
                "type": "scatter", "x": [lo, hi], "y": [lo, hi], "mode": "lines",
                "line": {"color": "#9ca3af", "dash": "dash", "width": 1}, "name": "perfect fit",
                "hoverinfo": "skip",
            },
            {
                "type": "scatter", "x": cv.predicted, "y": cv.observed, "mode": "markers",
                "name": "arms (95% intervals)",
                "marker": {"color": ACCENT, "size": 6, "opacity": 0.8},
                "error_x": {"type": "data", "array": [Z95 * s for s in cv.predicted_sd],
                            "color": MODEL, "thickness": 1, "width": 0},
                "error_y": {"type": "data", "array": err_y, "color": "#a5b4fc", "thickness": 1,
                            "width": 0},
                "text": cv.arm_names,
                "hovertemplate": "arm %{text}<br>predicted %{x:.4g}<br>observed %{y:.4g}"
                "<extra></extra>",
            },
        ],
        "layout": layout(
            xaxis=axis(f"predicted {cv.metric} (leave-one-out)", range=[lo, hi]),
            yaxis=axis(f"observed {cv.metric}", range=[lo, hi]),
        ),
    }  # fmt: skip


def slices_figure(
    curves: list[SliceCurve],
    metric: str,
    columns: int = 4,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Small multiples: the posterior of ``metric`` along each parameter (mean, 95% band),
    a dotted line at the ``reference`` arm's value."""
    n = len(curves)
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    data: list[dict[str, Any]] = []
    lay = layout(
        grid={"rows": rows, "columns": cols, "pattern": "independent", "ygap": 0.35,
              "xgap": 0.12},
        showlegend=False, height=max(300, 250 * rows), margin={"l": 56, "r": 16, "t": 28, "b": 40},
        annotations=[],
        shapes=[],
    )  # fmt: skip
    for k, c in enumerate(curves):
        suffix = "" if k == 0 else str(k + 1)
        xa, ya = f"x{suffix}", f"y{suffix}"
        mean, sd = c.mean[metric], c.sd[metric]
        lower = [m - Z95 * s for m, s in zip(mean, sd, strict=True)]
        upper = [m + Z95 * s for m, s in zip(mean, sd, strict=True)]
        if c.categorical:
            data.append(
                {
                    "type": "scatter", "x": [str(v) for v in c.values], "y": mean,
                    "mode": "markers", "xaxis": xa, "yaxis": ya,
                    "marker": {"color": MODEL, "size": 9},
                    "error_y": {"type": "data", "array": [Z95 * s for s in sd], "color": MODEL,
                                "thickness": 1.5, "width": 6},
                    "hovertemplate": f"{c.parameter}=%{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
                }
            )  # fmt: skip
        else:
            data += band(c.values, lower, upper, "95% credible band", xaxis=xa, yaxis=ya)
            data.append(
                {
                    "type": "scatter", "x": c.values, "y": mean, "mode": "lines",
                    "xaxis": xa, "yaxis": ya, "line": {"color": MODEL, "width": 2},
                    "hovertemplate": f"{c.parameter}=%{{x:.4g}}<br>{metric} %{{y:.4g}}"
                    "<extra></extra>",
                }
            )  # fmt: skip
        ref = reference.get(c.parameter) if reference else None
        if ref is not None:
            lay["shapes"].append(
                {
                    "type": "line", "xref": xa, "yref": f"{ya} domain", "x0": ref if not
                    c.categorical else str(ref), "x1": ref if not c.categorical else str(ref),
                    "y0": 0, "y1": 1, "line": {"color": "#9ca3af", "dash": "dot", "width": 1},
                }
            )  # fmt: skip
        lay[f"xaxis{suffix}"] = axis(c.parameter, **_axis_type(c.log_scale))
        lay[f"yaxis{suffix}"] = axis(metric if k % cols == 0 else "")
    return {"data": data, "layout": lay}


def contour_figure(
    g: ContourGrid, view: str = "mean", recommended: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A heat-contour of the posterior mean, its SD, or P(feasible), with the observed arms
    and the recommended arm (``recommended``: its parameters)."""
    if view == "feasibility" and g.p_feasible is not None:
        z, title, scale, zmin, zmax = (
            g.p_feasible, "P(feasible)",
            [[0, "#fef2f2"], [0.5, "#fde68a"], [1, "#059669"]], 0, 1,
        )  # fmt: skip
    elif view == "sd":
        z, title, scale, zmin, zmax = g.sd, f"SD of {g.metric}", "Greys", None, None
    else:
        z, title, scale, zmin, zmax = g.mean, f"mean {g.metric}", "Viridis", None, None
    trace: dict[str, Any] = {
        "type": "contour", "x": g.x_values, "y": g.y_values, "z": z, "colorscale": scale,
        "contours": {"coloring": "heatmap", "showlines": True},
        "line": {"width": 0.5, "color": "rgba(255,255,255,0.5)"},
        "colorbar": {"title": {"text": title, "side": "right", "font": {"size": 11}},
                     "thickness": 12, "outlinewidth": 0, "tickfont": {"size": 10}},
        "name": title,
        "hovertemplate": f"{g.x_parameter}=%{{x:.4g}}<br>{g.y_parameter}=%{{y:.4g}}<br>"
        f"{title} %{{z:.4g}}<extra></extra>",
    }  # fmt: skip
    if zmin is not None:
        trace["zmin"], trace["zmax"] = zmin, zmax
    rec = recommended or {}
    ref_x = [rec[g.x_parameter]] if g.x_parameter in rec and g.y_parameter in rec else []
    return {
        "data": [
            trace,
            {
                "type": "scatter", "x": g.observed_x, "y": g.observed_y, "mode": "markers",
                "name": "observed arms",
                "marker": {"color": "white", "size": 5, "line": {"color": INK, "width": 1}},
                "hovertemplate": f"{g.x_parameter}=%{{x:.4g}}<br>{g.y_parameter}=%{{y:.4g}}"
                "<extra>observed</extra>",
            },
            {
                "type": "scatter", "x": ref_x, "y": [rec[g.y_parameter]] if ref_x else [],
                "mode": "markers", "name": "recommended arm",
                "marker": {"color": MODEL, "size": 14, "symbol": "star",
                           "line": {"color": "white", "width": 1}},
                "hoverinfo": "name",
            },
        ],
        "layout": layout(
            xaxis=axis(g.x_parameter, **_axis_type(g.x_log)),
            yaxis=axis(g.y_parameter, **_axis_type(g.y_log)),
            legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom",
                    "font": {"size": 11, "color": MUTED}},
        ),
    }  # fmt: skip


def feasibility_figure(f: Feasibility) -> dict[str, Any]:
    """P(constraint holds) per completed arm by trial, each constraint and jointly."""
    data: list[dict[str, Any]] = []
    for k, expr in enumerate(f.constraints):
        data.append(
            {
                "type": "scatter", "x": f.trial_indices, "y": f.probability[expr],
                "mode": "markers", "name": expr,
                "marker": {"color": SERIES[(k + 1) % len(SERIES)], "size": 5, "opacity": 0.55},
                "text": f.arm_names,
                "hovertemplate": "trial %{x} (arm %{text})<br>P = %{y:.3f}<extra>" + expr
                + "</extra>",
            }
        )  # fmt: skip
    if len(f.constraints) > 1:  # with one constraint the joint is the same points again
        data.append(
            {
                "type": "scatter", "x": f.trial_indices, "y": f.joint, "mode": "markers",
                "name": "all constraints",
                "marker": {"color": INK, "size": 6, "symbol": "diamond"}, "text": f.arm_names,
                "hovertemplate": "trial %{x} (arm %{text})<br>P(all) = %{y:.3f}<extra></extra>",
            }
        )  # fmt: skip
    return {
        "data": data,
        "layout": layout(
            xaxis=axis("trial"),
            yaxis=axis("probability constraint holds", range=[-0.03, 1.03]),
            shapes=[
                {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0.9, "y1": 0.9,
                 "line": {"color": GOOD, "dash": "dot", "width": 1}},
            ],
        ),
    }  # fmt: skip


def importance_figure(imp: Importance) -> dict[str, Any]:
    """Horizontal bars: total-order and first-order Sobol' indices, most important on top."""
    order = sorted(range(len(imp.parameters)), key=lambda i: imp.total_order[i])
    names = [imp.parameters[i] for i in order]
    clip = lambda v: max(0.0, min(1.0, v))  # noqa: E731 - estimator noise can leave [0, 1]
    return {
        "data": [
            {
                "type": "bar", "orientation": "h", "y": names,
                "x": [clip(imp.total_order[i]) for i in order], "name": "total (with interactions)",
                "marker": {"color": ACCENT},
                "hovertemplate": "%{y}: %{x:.2f}<extra>total-order</extra>",
            },
            {
                "type": "bar", "orientation": "h", "y": names,
                "x": [clip(imp.first_order[i]) for i in order], "name": "alone (first-order)",
                "marker": {"color": "#a5b4fc"},
                "hovertemplate": "%{y}: %{x:.2f}<extra>first-order</extra>",
            },
        ],
        "layout": layout(
            barmode="group", bargap=0.3, height=max(220, 70 + 46 * len(names)),
            xaxis=axis(f"share of the variance of the predicted {imp.metric}", range=[0, 1]),
            yaxis=axis(""),
            margin={"l": 90, "r": 16, "t": 12, "b": 44},
        ),
    }  # fmt: skip


def arm_effects_figure(
    report: Any,
    metric: str,
    objective: Any = None,
    p_front: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """A forest plot: each arm's % effect on ``metric`` against the control, pooled over its
    batches with the delta-method 95% CI (dots), and the model's estimate (open diamonds),
    coloured by the model's P(feasible): green >= 0.9, amber >= 0.5, red below, grey unknown.

    With several objectives, ``objective`` (the :class:`~assay.platform.experiment.Objective`
    shown, if ``metric`` is one) puts its direction in the axis title and draws its relative
    threshold, the hypervolume reference point (Daulton et al. 2021), as an amber dashed
    line; ``p_front`` (arm -> P(feasible and on the Pareto front), from
    :func:`assay.platform.pareto_report.pareto_report`) goes into each arm's hover.
    """
    arms = [a for a in report.arms if not a.is_control and metric in a.metrics]

    def position(a: Any) -> float:
        e = a.metrics[metric]
        return e.observed.effect if e.observed is not None else e.model.mean

    arms.sort(key=position)

    def colour(p: float | None) -> str:
        if p is None:
            return MUTED
        return GOOD if p >= 0.9 else ("#d97706" if p >= 0.5 else BAD)

    names = [a.arm_name for a in arms]
    obs = [a.metrics[metric].observed for a in arms]
    model = [a.metrics[metric].model for a in arms]
    pf = [a.probability_feasible for a in arms]
    hover = [
        f"P(feasible) {p:.2f}" if p is not None else "P(feasible) not modelled yet" for p in pf
    ]
    if p_front is not None:
        hover = [
            h + (f"<br>P(on the front) {q:.2f}" if (q := p_front.get(n)) is not None else "")
            for h, n in zip(hover, names, strict=True)
        ]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter", "mode": "markers", "name": "observed (pooled over batches)",
            "y": names, "x": [o.effect if o else None for o in obs],
            "error_x": {
                "type": "data", "symmetric": False,
                "array": [(o.upper - o.effect) if o and o.upper is not None else 0 for o in obs],
                "arrayminus": [(o.effect - o.lower) if o and o.lower is not None else 0
                               for o in obs],
                "color": MUTED, "thickness": 1.2, "width": 3,
            },
            "marker": {"color": [colour(p) for p in pf], "size": 9},
            "text": hover,
            "hovertemplate": "%{y}: %{x:+.2f}%<br>%{text}<extra>observed</extra>",
        },
    ]  # fmt: skip
    if any(m is not None for m in model):
        data.append(
            {
                "type": "scatter", "mode": "markers", "name": "model estimate",
                "y": names, "x": [m.mean if m else None for m in model],
                "marker": {"color": [colour(p) for p in pf], "size": 9,
                           "symbol": "diamond-open", "line": {"width": 2}},
                "text": [f"95% CrI [{m.lower:+.2f}, {m.upper:+.2f}]" if m else "" for m in model],
                "hovertemplate": "%{y}: %{x:+.2f}%<br>%{text}<extra>model</extra>",
            }
        )  # fmt: skip
    shapes = [
        {"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": 0, "x1": 0,
         "line": {"color": INK, "width": 1}},
    ]  # fmt: skip
    for expr in report.constraints:  # a relative bound on this metric: a dashed line
        metric_name, _, rest = expr.partition(" ")
        if metric_name == metric and rest.endswith("%"):
            bound = float(rest.split()[-1].rstrip("%"))
            shapes.append(
                {"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": bound, "x1": bound,
                 "line": {"color": BAD, "dash": "dash", "width": 1}}
            )  # fmt: skip
    title = f"{metric}: % change vs control (95% CI)"
    if objective is not None:
        title += " · lower is better" if objective.minimize else " · higher is better"
        if objective.relative and objective.threshold is not None:
            shapes.append(
                {"type": "line", "yref": "paper", "y0": 0, "y1": 1,
                 "x0": objective.threshold, "x1": objective.threshold,
                 "line": {"color": MODEL, "dash": "dash", "width": 1.5}}
            )  # fmt: skip
    return {
        "data": data,
        "layout": layout(
            xaxis=axis(title, zeroline=False),
            yaxis=axis("", type="category", automargin=True),
            height=max(260, 28 * len(names) + 110),
            shapes=shapes,
        ),
    }


def pareto_figure(report: Any, x: str, y: str) -> dict[str, Any]:
    """Two objectives of a :class:`~assay.platform.pareto_report.ParetoReport` against each
    other: arms on the model's front in indigo with their 95% credible intervals (hover), the
    front drawn as a step line, dominated arms greyed, arms observed infeasible marked with a
    red cross; the reference point as a dashed corner."""
    objs = {o["name"]: o for o in report.objectives}
    sx = -1.0 if objs[x]["minimize"] else 1.0
    sy = -1.0 if objs[y]["minimize"] else 1.0

    def pt(a: Any, m: str) -> float:
        e = a.estimates.get(m)
        return e.mean if e is not None else a.observed.get(m, math.nan)

    def hover(a: Any) -> str:
        parts = [f"<b>{a.arm_name}</b>"]
        for m in (x, y):
            e = a.estimates.get(m)
            if e is not None and e.lower is not None:
                parts.append(f"{m}: {e.mean:.4g} [{e.lower:.4g}, {e.upper:.4g}]")
            elif e is not None:
                parts.append(f"{m}: {e.mean:.4g}")
        if a.probability_front is not None:
            parts.append(f"P(on the front) {a.probability_front:.2f}")
        if a.probability_feasible is not None:
            parts.append(f"P(feasible) {a.probability_feasible:.2f}")
        return "<br>".join(parts)

    groups = {
        "on the front": [a for a in report.arms if a.on_front],
        "dominated": [a for a in report.arms if not a.on_front and a.observed_feasible],
        "infeasible": [a for a in report.arms if not a.on_front and not a.observed_feasible],
    }
    style = {
        "on the front": {"color": ACCENT, "size": 10},
        "dominated": {"color": "rgba(107, 114, 128, 0.45)", "size": 8},
        "infeasible": {"color": BAD, "size": 9, "symbol": "x"},
    }
    data: list[dict[str, Any]] = []
    for name, arms in groups.items():
        if not arms:
            continue
        trace: dict[str, Any] = {
            "type": "scatter", "mode": "markers", "name": name,
            "x": [pt(a, x) for a in arms], "y": [pt(a, y) for a in arms],
            "text": [hover(a) for a in arms], "hovertemplate": "%{text}<extra></extra>",
            "marker": style[name],
        }  # fmt: skip
        if name == "on the front":

            def err(m: str, up: bool, arms: list = arms) -> list[float]:
                out = []
                for a in arms:
                    e = a.estimates.get(m)
                    if e is None or e.lower is None:
                        out.append(0.0)
                    else:
                        out.append((e.upper - e.mean) if up else (e.mean - e.lower))
                return out

            trace["error_x"] = {
                "type": "data",
                "symmetric": False,
                "array": err(x, True),
                "arrayminus": err(x, False),
                "color": ACCENT,
                "thickness": 1,
            }
            trace["error_y"] = {"type": "data", "symmetric": False, "array": err(y, True),
                                "arrayminus": err(y, False), "color": ACCENT, "thickness": 1}  # fmt: skip
        data.append(trace)
    front = sorted(groups["on the front"], key=lambda a: sx * pt(a, x))
    if front:
        data.append(
            {
                "type": "scatter", "mode": "lines", "name": "front",
                "x": [pt(a, x) for a in front], "y": [pt(a, y) for a in front],
                "line": {"shape": "vh" if sx * sy > 0 else "hv", "color": ACCENT, "width": 1.5},
                "hoverinfo": "skip",
            }
        )  # fmt: skip
    shapes = []
    ref = report.reference_point
    if x in ref and y in ref:
        rx, ry = ref[x]["value"], ref[y]["value"]
        shapes = [
            {"type": "line", "xref": "x", "yref": "paper", "x0": rx, "x1": rx, "y0": 0,
             "y1": 1, "line": {"color": MUTED, "dash": "dash", "width": 1}},
            {"type": "line", "xref": "paper", "yref": "y", "y0": ry, "y1": ry, "x0": 0,
             "x1": 1, "line": {"color": MUTED, "dash": "dash", "width": 1}},
        ]  # fmt: skip
    unit = " (% vs control)" if report.relative else ""

    def title(m: str) -> str:
        return f"{m}{unit} ({'minimize' if objs[m]['minimize'] else 'maximize'})"

    return {
        "data": data,
        "layout": layout(
            xaxis=axis(title(x)), yaxis=axis(title(y)), height=380, shapes=shapes,
        ),
    }  # fmt: skip


def hypervolume_figure(report: Any) -> dict[str, Any]:
    """The hypervolume after each completed trial: of the observed front (ink) and of the
    model's front (amber), against the same reference point."""
    xs = [p.trial_index for p in report.trace]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter", "mode": "lines+markers", "name": "observed front",
            "x": xs, "y": [p.observed for p in report.trace],
            "line": {"color": INK, "shape": "hv"}, "marker": {"size": 5},
        }
    ]  # fmt: skip
    if any(p.model is not None for p in report.trace):
        data.append(
            {
                "type": "scatter", "mode": "lines", "name": "model front",
                "x": xs, "y": [p.model for p in report.trace],
                "line": {"color": MODEL, "shape": "hv", "dash": "dot"},
            }
        )  # fmt: skip
    return {
        "data": data,
        "layout": layout(
            xaxis=axis("trial"), yaxis=axis("hypervolume"), height=300,
        ),
    }  # fmt: skip


def learning_curves_figure(
    curves: list[Any], metric: str, line: list[tuple[int, float]], rule_name: str = ""
) -> dict[str, Any]:
    """All trials' learning curves of ``metric`` on one chart: completed trials in ink,
    running ones in indigo, early-stopped ones in red with an ✕ where they stopped, and the
    early-stopping rule's line (dashed amber) per step.

    Args:
        curves: :class:`~assay.platform.early_stopping.Curve` objects.
        metric: The metric to draw.
        line: ``[(step, value)]`` of the rule (empty: none).
        rule_name: Legend label of the rule's line.
    """
    colour = {"completed": MUTED, "running": ACCENT, "early_stopped": BAD}
    traces: list[dict[str, Any]] = []
    seen: set[str] = set()
    stops_x, stops_y, stops_text = [], [], []
    for c in curves:
        pts = c.points.get(metric)
        if not pts:
            continue
        state = c.state if c.state in colour else "completed"
        traces.append({
            "type": "scatter", "mode": "lines", "x": [s for s, _ in pts],
            "y": _finite([v for _, v in pts]), "name": state.replace("_", " "),
            "legendgroup": state, "showlegend": state not in seen,
            "line": {"width": 1.5 if state != "completed" else 1, "color": colour[state]},
            "hovertemplate": f"trial {c.trial_id}<br>step %{{x}}<br>{metric} %{{y:.4g}}"
            "<extra></extra>",
        })  # fmt: skip
        seen.add(state)
        if state == "early_stopped":
            stops_x.append(pts[-1][0])
            stops_y.append(pts[-1][1])
            stops_text.append(f"trial {c.trial_id} stopped at step {pts[-1][0]}")
    if stops_x:
        traces.append({
            "type": "scatter", "mode": "markers", "x": stops_x, "y": _finite(stops_y),
            "name": "stopped here", "text": stops_text, "hoverinfo": "text",
            "marker": {"symbol": "x", "size": 10, "color": BAD},
        })  # fmt: skip
    if line:
        traces.append({
            "type": "scatter", "mode": "lines", "x": [s for s, _ in line],
            "y": _finite([v for _, v in line]), "name": rule_name or "stopping rule",
            "line": {"width": 2, "dash": "dash", "color": MODEL},
        })  # fmt: skip
    return {
        "data": traces,
        "layout": layout(xaxis=axis("step"), yaxis=axis(metric)),
    }


def parcoords_figure(exp: Any, colour_by: str) -> dict[str, Any]:
    """Parallel coordinates (Inselberg 1985) of every completed arm: one axis per tunable
    parameter, then one per metric (objectives first), each line coloured by ``colour_by``
    on the Viridis scale, its bright (yellow) end the *better* value of that metric (reversed
    for a minimized objective), and a last "constraints met" axis (observed; relative
    constraints against the batch's control) when there are outcome constraints. Arms of batch
    trials are one line each. Arms missing a metric are left out (a parcoords line needs every
    axis); the caller reports how many (:func:`parcoords_left_out`).

    When some arm violates a constraint, the "constraints met" axis starts brushed to "n/a" and
    "yes", so violating lines are drawn unselected: thin and grey, under the coloured ones
    (a click on the axis clears the brush and colours them too).

    Plotly's ``parcoords`` trace: axes can be dragged to reorder and brushed to filter. Used by
    the experiment page (one objective: :func:`assay.dashboards.routes.parallel_chart`; several:
    the "parcoords" panel, with a "Colour by" control) and by
    :func:`assay.dashboards.plots.parallel_coordinates`.
    """
    from assay.dashboards.data import arm_feasibility
    from assay.platform.experiment import TrialState
    from assay.platform.space import ChoiceParameter, FixedParameter

    config = exp.config
    params = [
        p
        for p in exp.search_space.parameters
        if not isinstance(p, FixedParameter) and getattr(p, "is_tunable", True)
    ]
    metrics = list(config.metric_names)
    rows: list[tuple[dict[str, Any], dict[str, float]]] = []
    feasible: list[bool | None] = []
    for t in exp.trials:
        if t.state != TrialState.COMPLETED:
            continue
        feas = arm_feasibility(t, config)
        for arm in t.arms:
            obs = t.observations.get(arm.name) or {}
            vals = {m: obs[m].mean for m in metrics if m in obs and obs[m].mean is not None}
            if all(m in vals and math.isfinite(vals[m]) for m in metrics):
                rows.append((arm.parameters, vals))
                feasible.append(feas.get(arm.name))
    dims: list[dict[str, Any]] = []
    for p in params:
        xs = [r[0].get(p.name) for r in rows]
        if isinstance(p, ChoiceParameter):
            cats = [str(v) for v in p.values]
            idx = [cats.index(str(v)) if str(v) in cats else None for v in xs]
            dims.append(
                {"label": p.name, "values": idx, "tickvals": list(range(len(cats))),
                 "ticktext": cats, "range": [0, max(1, len(cats) - 1)]}
            )  # fmt: skip
        elif getattr(p, "log", False):
            dims.append(
                {"label": f"{p.name} (log10)",
                 "values": [_short(math.log10(float(v))) if v is not None else None for v in xs],
                 "range": [math.log10(p.lower), math.log10(p.upper)]}  # type: ignore[attr-defined]
            )  # fmt: skip
        else:
            dims.append(
                {"label": p.name, "values": [_short(float(v)) if v is not None else None for v in xs],
                 "range": [p.lower, p.upper]}  # type: ignore[attr-defined]
            )  # fmt: skip
    minimize = {o.name: o.minimize for o in config.objectives}
    for m in metrics:
        arrow = " ↓" if minimize.get(m) else (" ↑" if m in minimize else "")
        dims.append({"label": f"{m}{arrow}", "values": [_short(r[1][m]) for r in rows]})
    if config.outcome_constraints:  # observed feasibility as an axis: brush it to keep "yes"
        met: dict[str, Any] = {
            "label": "constraints met",
            "values": [{True: 1, False: 0}.get(f, 0.5) for f in feasible],  # type: ignore[arg-type]
            "tickvals": [0, 0.5, 1], "ticktext": ["no", "n/a", "yes"], "range": [0, 1],
        }  # fmt: skip
        if any(f is False for f in feasible):  # violating lines start out grey (unselected)
            met["constraintrange"] = [0.25, 1]
        dims.append(met)
    colour = [_short(r[1][colour_by]) for r in rows]  # 7 digits, as the page's other charts
    better_low = minimize.get(colour_by, False)
    return {
        "data": [
            {
                "type": "parcoords",
                "dimensions": dims,
                "line": {
                    "color": colour,
                    "colorscale": "Viridis",
                    "reversescale": better_low,
                    "showscale": True,
                    "colorbar": {"title": {"text": colour_by, "side": "right"}, "thickness": 12},
                },
                "unselected": {"line": {"color": INFEASIBLE, "opacity": 0.6}},
                "labelfont": {"size": 12, "color": INK},
                "tickfont": {"size": 10, "color": MUTED},
            }
        ],
        "layout": layout(height=380, margin={"l": 60, "r": 40, "t": 56, "b": 24}),
    }


def parcoords_left_out(exp: Any, figure: dict[str, Any]) -> int:
    """How many completed arms with observations :func:`parcoords_figure` left out of
    ``figure`` (they miss a metric: a parcoords line needs every axis)."""
    from assay.platform.experiment import TrialState

    arms = sum(
        1
        for t in exp.trials
        if t.state == TrialState.COMPLETED
        for a in t.arms
        if t.observations.get(a.name)
    )
    return arms - len(figure["data"][0]["line"]["color"])


def _short(v: float | None) -> float | None:
    """7 significant digits: plenty for a chart, and a third of the JSON of full floats."""
    return float(f"{v:.7g}") if isinstance(v, float) and math.isfinite(v) else v


def trace_rows(exp: Any) -> list[dict[str, Any]]:
    """One row per completed arm that reports the objective, in trial order: ``trial_id``,
    ``index``, ``arm``, ``mean``, ``sem`` (``None``: unknown) and ``feasible``, the arm's
    observed feasibility (:func:`assay.dashboards.data.arm_feasibility`: relative
    constraints against the same batch's control; ``None`` when it cannot be judged). A batch
    trial (A/B test) contributes each of its arms."""
    from assay.dashboards.data import arm_feasibility
    from assay.platform.experiment import TrialState

    config = exp.config
    name = config.objective.name
    rows: list[dict[str, Any]] = []
    for t in sorted(exp.trials, key=lambda t: t.index):
        if t.state is not TrialState.COMPLETED or not t.observations:
            continue
        feasible = arm_feasibility(t, config)
        for arm in t.arms:
            o = (t.observations.get(arm.name) or {}).get(name)
            if o is None:
                continue
            rows.append(
                {"trial_id": t.id, "index": t.index, "arm": arm.name, "mean": o.mean,
                 "sem": o.sem, "feasible": feasible.get(arm.name)}
            )  # fmt: skip
    return rows


def trace_figure(exp: Any, model: Any = None) -> dict[str, Any]:
    """The optimization trace of the experiment page: each completed arm's observed objective
    (± SEM) by trial, arms whose observed means violate an outcome constraint drawn hollow and
    grey, and the best observed value among the others so far (a step line: the running
    maximum, or minimum when the objective is minimized).

    With ``model`` (a :class:`~assay.platform.diagnostics.ModelTrace`), four more traces in
    amber: the model's hindsight estimate of the best arm among the trials up to each point
    (the running best posterior mean among arms likely feasible) with its 95% band
    (mean ± 1.96 SD), and the arm recommended now with its 95% credible interval.

    Trace order (the page and its tests rely on it): 0 violating, 1 observed, 2 best so far,
    then the band's lower and upper edge, the model's best, the recommended arm. Each observed
    point's ``customdata`` starts with its trial id (a click on it opens the trial's page).
    """
    from assay.dashboards.data import fmt_value

    config = exp.config
    obj = config.objective.name
    sign = -1.0 if config.objective.minimize else 1.0
    rows = trace_rows(exp)
    label = html.escape(obj)

    def observed(points: list[dict[str, Any]], name: str, marker: dict, err: str) -> dict:
        return {
            "type": "scatter", "mode": "markers", "name": name,
            "x": [r["index"] for r in points], "y": [_short(r["mean"]) for r in points],
            "customdata": [
                [r["trial_id"], r["arm"], "unknown" if r["sem"] is None else fmt_value(r["sem"], 2)]
                for r in points
            ],
            "error_y": {"type": "data", "array": [_short(r["sem"]) or 0 for r in points],
                        "color": err, "thickness": 1, "width": 0},
            "marker": marker,
            "hovertemplate": "trial #%{x} · arm %{customdata[1]}<br>" + label
            + " %{y:.4g} ± %{customdata[2]}<extra></extra>",
        }  # fmt: skip

    ok = [r for r in rows if r["feasible"] is not False]
    bad = [r for r in rows if r["feasible"] is False]
    best_x: list[int] = []
    best_y: list[float | None] = []
    best: float | None = None
    for r in ok:
        if best is None or sign * r["mean"] > sign * best:
            best = r["mean"]
        best_x.append(r["index"])
        best_y.append(_short(best))
    data: list[dict[str, Any]] = [
        observed(bad, "violates a constraint",
                 {"color": "white", "size": 6, "line": {"color": INFEASIBLE, "width": 1.5}},
                 INFEASIBLE),
        observed(ok, "observed (± SEM)", {"color": ACCENT, "size": 6, "opacity": 0.85},
                 "#a5b4fc"),
        {"type": "scatter", "mode": "lines", "name": "best feasible observed", "x": best_x,
         "y": best_y, "line": {"color": INK, "width": 2, "shape": "hv"}, "hoverinfo": "skip"},
    ]  # fmt: skip
    if model is not None:
        data += _model_trace_layer(model, label)
    few = bool(rows) and rows[-1]["index"] < 12
    return {
        "data": data,
        "layout": layout(
            height=380,
            xaxis=axis("trial", **({"dtick": 1} if few else {})),
            yaxis=axis(obj + (" (lower is better)" if config.objective.minimize else "")),
        ),
    }


def _model_trace_layer(m: Any, label: str) -> list[dict[str, Any]]:
    """The amber traces of :func:`trace_figure` from a ``ModelTrace``."""
    from assay.dashboards.data import fmt_value

    xs, lo, hi, mid = [], [], [], []
    for ix, b, s in zip(m.trial_indices, m.best_so_far, m.best_so_far_sd, strict=True):
        if b is None:
            continue
        xs.append(ix)
        mid.append(_short(b))
        lo.append(_short(b - Z95 * (s or 0.0)))
        hi.append(_short(b + Z95 * (s or 0.0)))
    line = {"width": 0, "shape": "hv", "color": MODEL_BAND}
    r = m.recommended
    star: dict[str, Any] = {
        "type": "scatter", "mode": "markers", "name": "recommended arm",
        "x": [r["trial_index"]] if r else [], "y": [_short(r["mean"])] if r else [],
        "marker": {"color": MODEL, "size": 15, "symbol": "star",
                   "line": {"color": "white", "width": 1}},
    }  # fmt: skip
    if r:
        star["error_y"] = {
            "type": "data", "symmetric": False, "array": [r["upper"] - r["mean"]],
            "arrayminus": [r["mean"] - r["lower"]], "color": MODEL, "thickness": 1.5, "width": 5,
        }  # fmt: skip
        star["hovertemplate"] = (
            f"recommended arm {html.escape(str(r['arm_name']))}<br>model {label} %{{y:.4g}} "
            f"[{fmt_value(r['lower'])}, {fmt_value(r['upper'])}]<extra></extra>"
        )
    return [
        {"type": "scatter", "mode": "lines", "x": xs, "y": lo, "line": line,
         "hoverinfo": "skip", "showlegend": False},
        {"type": "scatter", "mode": "lines", "x": xs, "y": hi, "fill": "tonexty",
         "fillcolor": MODEL_BAND, "line": line, "name": "model: 95% band", "hoverinfo": "skip"},
        {"type": "scatter", "mode": "lines", "x": xs, "y": mid,
         "name": "model's estimate of the best", "line": {"color": MODEL, "width": 2, "shape": "hv"},
         "hovertemplate": f"after trial #%{{x}}<br>model's best {label} %{{y:.4g}}<extra></extra>"},
        star,
    ]  # fmt: skip
