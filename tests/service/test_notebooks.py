"""Notebooks: ``_repr_html_`` of experiments, trials, ``best``, ``effects`` and the Pareto
front (escaped HTML tables), and the dashboard's charts from Python (``assay.dashboards.plots``), built by the
same panels and chart builders as the experiment page."""

from __future__ import annotations

import assay
from assay.dashboards import charts, plots


def _experiment(client):
    exp = client.create_experiment(
        name="nb<script>",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "z", "type": "float", "bounds": [0, 1]},
        ],
        objective="y",
        generator="sobol",
        seed=0,
    )
    for _ in range(6):
        [t] = client.ask(exp.id)
        client.tell(t.id, {"y": ((t.parameters["x"] - 0.4) ** 2 + 0.1 * t.parameters["z"], 0.01)})
    return client.get_experiment(exp.id)


def test_repr_html_of_experiment_trial_best_and_effects() -> None:
    with assay.Client() as client:
        exp = _experiment(client)
        page = exp._repr_html_()
        assert "<table" in page and "nb&lt;script&gt;" in page and "<script>" not in page
        assert page.count("<tr>") >= 6 + 6  # facts + trials
        trial = exp.trials[0]._repr_html_()
        assert "completed" in trial and "y=" in trial
        best = client.best(exp.id)._repr_html_()
        assert "Best arm" in best and "95% lower" in best


def test_effects_repr_html() -> None:
    with assay.Client() as client:
        exp = client.create_experiment(
            name="ab", parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
            objective="y", generator="sobol", status_quo={"x": 0.5},
        )  # fmt: skip
        t = client.ask_batch(exp.id, n_arms=3)
        client.tell_batch(t.id, {a.name: {"y": (1.0 + i / 10, 0.05, 100)}
                                 for i, a in enumerate(t.arms)})  # fmt: skip
        page = client.effects(exp.id)._repr_html_()
    assert "status_quo" in page and "control" in page and "effect %" in page


def test_plots_share_the_dashboard_chart_builders(monkeypatch) -> None:
    with assay.Client() as client:
        exp = _experiment(client)
    calls = []
    original = charts.slices_figure

    def spy(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    monkeypatch.setattr(charts, "slices_figure", spy)
    fig = plots.slices(exp)
    assert calls == [1]  # one implementation: the dashboard's builder made it
    data = fig.to_dict()["data"] if hasattr(fig, "to_dict") else fig["data"]
    assert data, "the slices figure has traces"
    surface = plots.response_surface(exp, x="x", y="z")
    sdata = surface.to_dict()["data"] if hasattr(surface, "to_dict") else surface["data"]
    assert any(t.get("type") == "contour" for t in sdata)


def _data(fig):
    return fig.to_dict()["data"] if hasattr(fig, "to_dict") else fig["data"]


def test_plots_of_several_objectives_and_their_limits() -> None:
    """Pareto front, hypervolume and parallel coordinates from Python on a two-objective
    experiment; on a one-objective experiment they say they do not apply."""
    from assay.platform.errors import NotFoundError

    with assay.Client() as client:
        exp = client.create_experiment(
            name="mo", parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
            objectives=["a", {"name": "b", "minimize": True}], generator="sobol", seed=0,
        )  # fmt: skip
        for _ in range(6):
            [t] = client.ask(exp.id)
            x = t.parameters["x"]
            client.tell(t.id, {"a": (x, 0.01), "b": ((1 - x) ** 2, 0.01)})
        exp = client.get_experiment(exp.id)
        front = client.pareto(exp.id)
        page = front._repr_html_()
        one = _experiment(client)
    assert "<table" in page and "Pareto front of experiment" in page
    assert "a (max)" in page and "b (min)" in page and "P(on front)" in page
    assert page.count("<tr>") == 1 + len(front.arms)  # header + one row per arm
    assert page.count(">yes<") == len(front.front)
    par = _data(plots.parallel_coordinates(exp, colour_by="b"))
    assert par and par[0]["type"] == "parcoords"
    assert any("lines" in t.get("mode", "") for t in _data(plots.hypervolume(exp)))
    assert _data(plots.pareto(exp, x="a", y="b"))
    try:
        plots.pareto(one)
    except NotFoundError as e:
        assert "does not apply" in str(e)
    else:
        raise AssertionError("a one-objective experiment has no Pareto chart")


def test_parallel_coordinates_of_a_one_objective_experiment() -> None:
    with assay.Client() as client:
        exp = _experiment(client)
    [trace] = _data(plots.parallel_coordinates(exp))
    assert trace["type"] == "parcoords"
    assert [d["label"] for d in trace["dimensions"]][:2] == ["x", "z"]
    assert len(trace["line"]["color"]) == 6
