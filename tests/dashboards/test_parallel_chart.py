"""Parallel coordinates are built once, in Python (:func:`assay.dashboards.charts.parcoords_figure`):
a one-objective experiment's page draws what its routes send (the first figure in the page
data, then ``GET /experiments/{id}/parallel`` with the live updates), experiments with several
objectives get the "parcoords" panel, and ``assay.plots.parallel_coordinates`` returns the same
figure. Checked on built one-objective experiments: axes, colour by the objective (bright =
better), violating arms greyed by a preset brush, arms missing a metric left out and counted."""

from __future__ import annotations

import json
import re

import assay
from assay.dashboards import charts
from assay.dashboards.routes import parallel_chart

JSON = {"accept": "application/json"}
PARAMS = [
    {"name": "x", "type": "float", "bounds": [0, 1]},
    {"name": "lr", "type": "float", "bounds": [1e-4, 1e-1], "log": True},
    {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
]


def _built(client, ys, cs=None, *, minimize=False, pending=0, name="par"):
    """A one-objective experiment whose completed trials report ``y`` and, when ``cs`` is
    given, ``c`` under ``c <= 0.5`` (``None`` in ``cs``: ``c`` not reported)."""
    exp = client.create_experiment(
        name=name, parameters=PARAMS,
        objective={"name": "y", "minimize": minimize} if minimize else "y",
        outcome_constraints=["c <= 0.5"] if cs else [], generator="sobol", seed=0,
    )  # fmt: skip
    for k, y in enumerate(ys):
        [t] = client.ask(exp.id)
        obs = {"y": (y, 0.1)}
        if cs and cs[k] is not None:
            obs["c"] = (cs[k], 0.01)
        client.tell(t.id, obs)
    for _ in range(pending):
        client.ask(exp.id)
    return client.get_experiment(exp.id)


def test_one_objective_axes_colour_and_violating_arms_greyed() -> None:
    ys = [1.0, 3.0, 6.0, 2.0]
    cs = [0.1, 0.1, 0.9, 0.1]  # the third arm violates c <= 0.5
    with assay.Client() as client:
        exp = _built(client, ys, cs, pending=1)
    fig = charts.parcoords_figure(exp, "y")
    [trace] = fig["data"]
    assert trace["type"] == "parcoords"
    labels = [d["label"] for d in trace["dimensions"]]
    assert labels == ["x", "lr (log10)", "opt", "y ↑", "c", "constraints met"]
    x, lr, opt, y, c, met = trace["dimensions"]
    assert y["values"] == ys and c["values"] == cs  # the pending trial draws no line
    assert trace["line"]["color"] == ys and trace["line"]["reversescale"] is False
    assert all(0 <= v <= 1 for v in x["values"]) and x["range"] == [0, 1]
    assert lr["range"] == [-4, -1] and all(-4 <= v <= -1 for v in lr["values"])
    assert opt["ticktext"] == ["adam", "sgd"] and set(opt["values"]) <= {0, 1}
    assert met["values"] == [1, 1, 0, 1]
    # violating lines start out unselected (grey, under the others); a click clears the brush
    assert met["constraintrange"] == [0.25, 1]
    lo, hi = met["constraintrange"]
    assert [lo <= v <= hi for v in met["values"]] == [True, True, False, True]
    assert trace["unselected"]["line"]["color"] == charts.INFEASIBLE
    assert charts.parcoords_left_out(exp, fig) == 0
    json.dumps(fig)  # plain JSON for the page


def test_minimize_reverses_the_scale_and_no_violation_means_no_brush() -> None:
    with assay.Client() as client:
        exp = _built(client, [5.0, 3.0, 4.0], [0.1, 0.2, 0.3], minimize=True)
    [trace] = charts.parcoords_figure(exp, "y")["data"]
    assert trace["dimensions"][3]["label"] == "y ↓"
    assert trace["line"]["reversescale"] is True  # the bright end is the lowest y
    assert "constraintrange" not in trace["dimensions"][-1]


def test_arms_missing_a_metric_are_left_out_and_the_page_says_so() -> None:
    with assay.Client() as client:
        exp = _built(client, [1.0, 2.0, 3.0], [0.1, None, 0.2])
        nothing = _built(client, [1.0], [None], pending=1, name="nothing")
        pending = _built(client, [], pending=2, name="pending")
    chart = parallel_chart(exp)
    assert chart["figure"]["data"][0]["line"]["color"] == [1.0, 3.0]
    assert (
        chart["note"]
        == "1 completed arm misses a metric and is not drawn (a line needs every axis)."
    )
    assert charts.parcoords_left_out(exp, chart["figure"]) == 1
    for e in (nothing, pending):
        empty = parallel_chart(e)
        assert empty["figure"] is None and empty["empty"]["title"] == "Nothing to compare yet"


def test_plots_parallel_coordinates_is_the_page_figure() -> None:
    from assay import plots

    with assay.Client() as client:
        exp = _built(client, [1.0, 3.0, 2.0], [0.1, 0.9, 0.1])
    fig = plots.parallel_coordinates(exp)
    page = parallel_chart(exp)["figure"]
    if hasattr(fig, "to_dict"):  # Plotly installed: the page's dict as a Figure
        fig, page = fig.to_dict(), type(fig)(page).to_dict()
    assert fig["data"] == page["data"] and fig["layout"] == page["layout"]
    assert fig["data"][0]["dimensions"][-1]["constraintrange"] == [0.25, 1]


def _page_data(client, exp_id: int) -> dict:
    page = client.get(f"/experiments/{exp_id}", headers={"accept": "text/html"}).text
    return json.loads(
        re.search(
            r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S
        ).group(1)
    )


def test_the_page_draws_the_server_figure_and_the_route_keeps_it_current(seeded) -> None:
    from assay.dashboards.sample import seed_ab_experiment

    client, store, ids = seeded
    first = _page_data(client, ids["big"])["parallel"]
    [trace] = first["figure"]["data"]
    assert trace["type"] == "parcoords" and len(trace["line"]["color"]) == 24
    assert [d["label"] for d in trace["dimensions"]][-4:] == [
        "accuracy ↑", "latency_ms", "memory_gb", "constraints met",
    ]  # fmt: skip
    live = client.get(f"/experiments/{ids['big']}/parallel", headers=JSON).json()
    assert live == first
    # a trial completed through the API reaches the route (the page fetches it on each update)
    api = "/api/v1"
    t = client.post(
        f"{api}/experiments/{ids['big']}/trials",
        json={"parameters": {"lr": 0.003, "layers": 5, "dropout": 0.2, "optimizer": "lamb"}},
    ).json()
    r = client.post(
        f"{api}/trials/{t['id']}:complete",
        json={"observations": {"accuracy": [0.97, 0.01], "latency_ms": [19.0, 0.5],
                               "memory_gb": [1.0, 0.0]}},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    live = client.get(f"/experiments/{ids['big']}/parallel", headers=JSON).json()
    assert live["figure"]["data"][0]["line"]["color"][-1] == 0.97
    empty = client.get(f"/experiments/{ids['empty']}/parallel", headers=JSON).json()
    assert empty == {"figure": None, "empty": None, "note": ""}  # the page keeps its card
    assert _page_data(client, ids["empty"])["parallel"] == empty
    # several objectives: the "parcoords" panel draws them, not the page data
    mo = seed_ab_experiment(
        store, "pricing-mo", rounds=1,
        spec={"objectives": ["revenue", {"name": "bounce_rate", "minimize": True}],
              "outcome_constraints": ["orders >= -1%"], "generator": "noisy_ehvi"},
    )  # fmt: skip
    assert _page_data(client, mo.id)["parallel"] is None
