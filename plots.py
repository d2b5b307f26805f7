"""``assay.plots``: the dashboard's charts as Plotly figures from Python (notebooks).

A name for users only: every function is :mod:`assay.dashboards.plots`, which runs the
experiment page's own chart builders (:mod:`assay.dashboards.charts`), so a chart in a
notebook and on the page are one implementation.

Example:
    >>> from assay import plots  # doctest: +SKIP
    >>> plots.trace(client.get_experiment(exp_id))  # doctest: +SKIP

May import: :mod:`assay.dashboards.plots` only (``tests/test_layering.py``).
"""

from __future__ import annotations

from assay.dashboards.plots import (
    arm_effects,
    feasibility,
    hypervolume,
    importance,
    learning_curves,
    model_fit,
    parallel_coordinates,
    pareto,
    response_surface,
    slices,
    trace,
)

__all__ = [
    "arm_effects",
    "feasibility",
    "hypervolume",
    "importance",
    "learning_curves",
    "model_fit",
    "parallel_coordinates",
    "pareto",
    "response_surface",
    "slices",
    "trace",
]
