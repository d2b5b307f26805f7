"""The optimization trace is built once, in Python (:func:`assay.dashboards.charts.trace_figure`):
the experiment page draws what its routes send and ``assay.plots.trace`` returns the same
figure. Checked on built experiments: the best-so-far line is monotone and skips arms that
violate a constraint, which are drawn apart; minimizing flips both; the model layer; the
routes the page polls."""

from __future__ import annotations

import json
import re
from itertools import pairwise

import pytest

import assay
from assay.dashboards import charts
from assay.dashboards.routes import trace_chart

JSON = {"accept": "application/json"}
PARAMS = [{"name": "x", "type": "float", "bounds": [0, 1]}]


def _built(client, ys, cs=None, *, minimize=False, extra=()):
    """An experiment whose completed trials report ``y`` (and ``c`` under ``c <= 0.5``)."""
    exp = client.create_experiment(
        name="trace", parameters=PARAMS,
        objective={"name": "y", "minimize": minimize} if minimize else "y",
        outcome_constraints=["c <= 0.5"] if cs else [], generator="sobol", seed=0,
    )  # fmt: skip
    ids = []
    for k, y in enumerate(ys):
        [t] = client.ask(exp.id)
        obs = {"y": (y, 0.1)}
        if cs:
            obs["c"] = (cs[k], 0.01)
        client.tell(t.id, obs)
        ids.append(t.id)
    for what in extra:  # trials that never reach the trace
        [t] = client.ask(exp.id)
        if what == "failed":
            client.fail(t.id, "crashed")
    return client.get_experiment(exp.id), ids


def test_best_so_far_is_monotone_and_skips_infeasible_arms() -> None:
    ys = [1.0, 3.0, 6.0, 2.0, 4.0, 5.0]
    cs = [0.1, 0.1, 0.9, 0.1, 0.1, 0.9]  # trials 2 and 5 violate c <= 0.5
    with assay.Client() as client:
        exp, ids = _built(client, ys, cs, extra=("failed", "running"))
    fig = charts.trace_figure(exp)
    bad, ok, best = fig["data"]
    assert [t["name"] for t in fig["data"]] == [
        "violates a constraint", "observed (± SEM)", "best feasible observed",
    ]  # fmt: skip
    assert bad["x"] == [2, 5] and bad["y"] == [6.0, 5.0]
    assert ok["x"] == [0, 1, 3, 4] and ok["y"] == [1.0, 3.0, 2.0, 4.0]
    assert best["x"] == ok["x"] and best["y"] == [1.0, 3.0, 3.0, 4.0]
    assert all(a <= b for a, b in pairwise(best["y"]))
    assert max(best["y"]) < 6.0  # the infeasible 6 is never the best
    assert ok["error_y"]["array"] == [0.1] * 4
    assert [cd[0] for cd in ok["customdata"]] == [ids[i] for i in (0, 1, 3, 4)]  # click -> trial
    assert bad["marker"]["color"] == "white"  # hollow
    assert "lower is better" not in fig["layout"]["yaxis"]["title"]["text"]
    assert fig["layout"]["xaxis"]["dtick"] == 1  # few trials: integer ticks
    json.dumps(fig)  # plain JSON for the page


def test_minimize_flips_the_best_line_and_says_so() -> None:
    with assay.Client() as client:
        exp, _ = _built(client, [5.0, 3.0, 4.0, 1.0, 2.0], minimize=True)
    fig = charts.trace_figure(exp)
    best = fig["data"][2]["y"]
    assert best == [5.0, 3.0, 3.0, 1.0, 1.0]
    assert all(a >= b for a, b in pairwise(best))
    assert fig["data"][0]["x"] == []  # no constraint: nothing violates one
    assert fig["layout"]["yaxis"]["title"]["text"] == "y (lower is better)"


def _data(fig):
    return fig.to_dict()["data"] if hasattr(fig, "to_dict") else fig["data"]


def test_plots_trace_is_the_page_builder_with_the_model_layer(monkeypatch) -> None:
    from assay import plots

    with assay.Client() as client:
        exp, _ = _built(client, [0.2, 0.5, 0.4, 0.8, 0.6])
    calls = []
    original = charts.trace_figure

    def spy(*a, **kw):
        calls.append(a[1])
        return original(*a, **kw)

    monkeypatch.setattr(charts, "trace_figure", spy)
    data = _data(plots.trace(exp))  # fits the model once
    assert len(calls) == 1 and calls[0] is not None  # one implementation, given the model
    assert len(data) == 7
    band_lo, band_hi, model_best, star = data[3:]
    assert band_hi["fill"] == "tonexty" and list(model_best["x"]) == list(band_lo["x"])
    assert all(lo <= m <= hi for lo, m, hi in zip(band_lo["y"], model_best["y"], band_hi["y"],
                                                   strict=True))  # fmt: skip
    assert star["name"] == "recommended arm" and len(star["x"]) == 1
    assert calls[0].recommended["mean"] == pytest.approx(star["y"][0], rel=1e-6)
    assert len(_data(plots.trace(exp, model=False))) == 3
    assert plots.trace is assay.dashboards.plots.trace  # `from assay import plots`: the same


def test_the_page_draws_the_server_figure_and_the_routes_keep_it_current(seeded) -> None:
    client, _, ids = seeded
    page = client.get(f"/experiments/{ids['big']}", headers={"accept": "text/html"}).text
    data = json.loads(
        re.search(
            r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S
        ).group(1)
    )
    first = data["trace"]["figure"]
    assert len(first["data"]) == 3  # drawn at once, before any model is fitted
    live = client.get(f"/experiments/{ids['big']}/trace", headers=JSON).json()
    assert live["figure"] == first and live["note"] == ""
    model = client.get(f"/experiments/{ids['big']}/model-trace", headers=JSON).json()
    assert len(model["chart"]["figure"]["data"]) == 7 and "amber line" in model["chart"]["note"]
    assert model["trace"]["recommended"]
    # the live feed keeps the model's layer until the next fit replaces it
    live = client.get(f"/experiments/{ids['big']}/trace", headers=JSON).json()
    assert len(live["figure"]["data"]) == 7
    few = client.get(f"/experiments/{ids['few']}/model-trace", headers=JSON).json()
    assert "at least 3" in few["empty"]["message"] and len(few["chart"]["figure"]["data"]) == 3
    empty = client.get(f"/experiments/{ids['empty']}/trace", headers=JSON).json()
    assert empty == {"figure": None, "empty": None, "note": ""}  # the page's own card stays


def test_pending_trials_only_give_an_empty_card() -> None:
    with assay.Client() as client:
        exp, _ = _built(client, [], extra=("running", "running"))
    chart = trace_chart(exp)
    assert chart["figure"] is None
    assert chart["empty"]["title"] == "No completed trials yet"
    assert "2 trials are not completed yet" in chart["empty"]["message"]
