"""The dashboard's charts from Python (``from assay import plots``, or
``from assay.dashboards import plots``): each function runs the experiment page's panel or
chart builder — the same data code and the same builders of :mod:`assay.dashboards.charts` —
and returns its figure, as a ``plotly.graph_objects.Figure`` when Plotly is installed, else the
plain figure dict (``fig["data"]``, ``fig["layout"]``).

Example:
    >>> from assay import plots  # doctest: +SKIP
    >>> plots.trace(client.get_experiment(exp.id))  # doctest: +SKIP

May import: :mod:`assay.dashboards` (panels, data), :mod:`assay.platform`.
"""

from __future__ import annotations

from typing import Any

from assay.dashboards.data import ModelCache
from assay.dashboards.panels import PanelContext, get_panel, run_panel
from assay.platform.diagnostics import InsufficientDataError, model_trace
from assay.platform.errors import NotFoundError
from assay.platform.experiment import Experiment

_MODELS = ModelCache()


def _figure(exp: Experiment, key: str, controls: dict[str, Any]) -> Any:
    panel = get_panel(key)
    if panel is None or not panel.applies(exp):
        raise NotFoundError(f"the {key!r} chart does not apply to experiment {exp.id}")
    params = {k: str(v) for k, v in controls.items() if v is not None}
    ctx = PanelContext(experiment=exp, params=params, models=_MODELS, jobs=None, project=None)
    result = run_panel(panel, ctx)
    if result.figure is None:
        problem = result.empty or result.error or {}
        raise NotFoundError(
            f"{key}: {problem.get('message') or problem.get('title') or 'no figure'}"
        )
    return _plotly(result.figure)


def _plotly(figure: dict[str, Any]) -> Any:
    """``figure`` as a ``plotly.graph_objects.Figure`` when Plotly is installed, else as is."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return figure
    return go.Figure(figure)


def trace(exp: Experiment, model: bool = True) -> Any:
    """The optimization trace of the experiment page: each completed arm's observed objective
    (± SEM), the best feasible value observed so far, arms violating a constraint marked, and
    (``model``, once there is enough data to fit) the model's estimate of the best arm so far
    with its 95% band and the recommended arm — the page's own builder,
    :func:`assay.dashboards.charts.trace_figure`."""
    from assay.dashboards import charts

    layer = None
    if model:
        try:
            layer = model_trace(_MODELS.get(exp))
        except InsufficientDataError:
            layer = None
    return _plotly(charts.trace_figure(exp, layer))


def slices(exp: Experiment, metric: str | None = None) -> Any:
    """The model's one-parameter slices through the recommended arm."""
    return _figure(exp, "slices", {"metric": metric})


def response_surface(
    exp: Experiment,
    x: str | None = None,
    y: str | None = None,
    metric: str | None = None,
    view: str | None = None,
) -> Any:
    """The model's response surface over two parameters (``view``: ``mean`` or ``sd``)."""
    return _figure(exp, "contour", {"x": x, "y": y, "metric": metric, "view": view})


def model_fit(exp: Experiment) -> Any:
    """Leave-one-out predicted vs. observed."""
    return _figure(exp, "model-fit", {})


def importance(exp: Experiment) -> Any:
    """Parameter importance (inverse length scales)."""
    return _figure(exp, "importance", {})


def feasibility(exp: Experiment) -> Any:
    """P(feasible) of the observed arms under the outcome constraints."""
    return _figure(exp, "feasibility", {})


def arm_effects(exp: Experiment, metric: str | None = None) -> Any:
    """Each arm's % effect against the control with 95% CIs (A/B experiments)."""
    return _figure(exp, "arm-effects", {"metric": metric})


def pareto(exp: Experiment, x: str | None = None, y: str | None = None) -> Any:
    """Two objectives against each other: the model's front, dominated and infeasible arms, the
    reference point (experiments with several objectives)."""
    return _figure(exp, "pareto", {"x": x, "y": y})


def hypervolume(exp: Experiment) -> Any:
    """The hypervolume of the observed and the model's front after each completed trial."""
    return _figure(exp, "hypervolume", {})


def parallel_coordinates(exp: Experiment, colour_by: str | None = None) -> Any:
    """One line per completed arm across parameters and metrics, coloured by ``colour_by``
    (default: the first objective), violating arms greyed
    (:func:`assay.dashboards.charts.parcoords_figure`). Experiments with several objectives
    go through the dashboard's "parcoords" panel; for one objective the builder is called as
    the page's own chart calls it (:func:`assay.dashboards.routes.parallel_chart`)."""
    if exp.config.is_multi_objective:
        return _figure(exp, "parcoords", {"colour": colour_by})
    from assay.dashboards import charts

    return _plotly(charts.parcoords_figure(exp, colour_by or exp.config.metric_names[0]))


def learning_curves(exp: Experiment, metric: str | None = None) -> Any:
    """Every trial's reported curve of ``metric``, early-stopped trials marked, and the
    early-stopping rule's line."""
    return _figure(exp, "learning-curves", {"metric": metric})
