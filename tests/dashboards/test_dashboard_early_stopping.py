"""The dashboard's learning-curves panel (curves per metric, stopped points, the rule's line,
the stopping recommendation) and the reason on an early-stopped trial's page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from assay.service.app import create_app
from assay.service.engine import Engine
from assay.service.settings import Settings
from assay.storage.memory import MemoryStore

JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}


def test_learning_curves_panel_and_stopped_trial_page() -> None:
    store = MemoryStore()
    engine = Engine(store)
    exp = engine.create_experiment({
        "name": "curves", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "acc", "tracking_metrics": ["loss"],
        "early_stopping": {"strategy": "percentile", "min_curves": 2},
        "stopping": {"rule": "improvement", "window": 2, "min_trials": 3},
    })  # fmt: skip
    ids = []
    for i, level in enumerate((0.6, 0.7, 0.8)):
        t = engine.attach_trial(exp.id, {"x": i / 10})
        for step in range(1, 5):
            engine.report(t.id, step, {"acc": level * step / 4, "loss": 1 - level})
        engine.tell(t.id, {"acc": level})
        ids.append(t.id)
    bad = engine.attach_trial(exp.id, {"x": 0.9})
    for step in range(1, 3):
        engine.report(bad.id, step, {"acc": 0.01})
    decision = engine.early_stop_if_needed(bad.id)
    assert decision.should_stop
    app = create_app(Settings(reaper_interval_s=0), store)
    # local no-auth mode: the test client must look like this machine's browser
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
        page = client.get(f"/experiments/{exp.id}", headers=HTML)
        assert 'data-panel="learning-curves"' in page.text
        body = client.get(f"/experiments/{exp.id}/panels/learning-curves", headers=JSON).json()
        fig = body["figure"]
        names = [t["name"] for t in fig["data"]]
        assert "early stopped" in names and "stopped here" in names
        assert "percentile rule" in names
        [stop] = [t for t in fig["data"] if t["name"] == "stopped here"]
        assert stop["x"] == [2] and stop["y"] == [0.01]
        [line] = [t for t in fig["data"] if t["name"] == "percentile rule"]
        assert line["x"] == [1, 2, 3, 4] and line["y"][0] is not None
        facts = {f["label"]: f["value"] for f in body["facts"]}
        assert facts["early stopping"] == "percentile"
        assert facts["stopped early"] == "1 of 4 trials"
        assert facts["experiment (improvement rule)"] in ("done", "keep going")
        assert any(n.startswith("Stopping: ") for n in body["notes"])
        loss = client.get(
            f"/experiments/{exp.id}/panels/learning-curves?metric=loss", headers=JSON
        ).json()
        assert all(t["name"] != "percentile rule" for t in loss["figure"]["data"])
        trial_page = client.get(f"/trials/{bad.id}", headers=HTML).text
        assert "Early stopped:" in trial_page and "percentile" in trial_page


def test_learning_curves_panel_draws_the_ramped_rule() -> None:
    # With ramp_from 3 of min_curves 5 the rule's line exists from three completed curves on
    # (the plain rule would draw none), at the ramped percentile; the facts name the ramp.
    store = MemoryStore()
    engine = Engine(store)
    exp = engine.create_experiment({
        "name": "ramp", "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "acc",
        "early_stopping": {"strategy": "percentile", "min_curves": 5, "ramp_from": 3,
                           "reference": "completed", "compare": "best"},
    })  # fmt: skip
    for i, level in enumerate((0.6, 0.7, 0.8, 0.9)):
        t = engine.attach_trial(exp.id, {"x": i / 10})
        for step in (1, 2, 3):
            engine.report(t.id, step, {"acc": level + 0.1 * (step - 2)})
        engine.tell(t.id, {"acc": level + 0.1})
    app = create_app(Settings(reaper_interval_s=0), store)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
        body = client.get(f"/experiments/{exp.id}/panels/learning-curves", headers=JSON).json()
        [line] = [t for t in body["figure"]["data"] if t["name"] == "percentile rule"]
        # Four curves, three others per trial: the 16.7th percentile of 0.6..0.9 at step 2.
        assert line["x"] == [1, 2, 3] and abs(line["y"][1] - 0.65) < 1e-9
        facts = {f["label"]: f["value"] for f in body["facts"]}
        assert facts["early stopping"] == "percentile, ramped from 3 of 5 curves"


def test_experiment_page_shows_why_it_has_its_status() -> None:
    """The status badge comes with the reason, the deciding rule and its figures."""
    store = MemoryStore()
    engine = Engine(store)
    spec = {"parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}], "objective": "acc"}
    done = engine.create_experiment({"name": "done", **spec})
    plain = engine.create_experiment({"name": "plain", **spec})
    engine.set_status(
        done.id, "completed", actor="w1", rule="improvement",
        reason="experiment done (improvement rule): the best feasible value has not improved",
        figures={"best_now": 0.91234, "noise": 0.004, "noise_source": "median SEM",
                 "checks": [1, 2]},
    )  # fmt: skip
    app = create_app(Settings(reaper_interval_s=0), store)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000)) as client:
        page = client.get(f"/experiments/{done.id}", headers=HTML)
        assert page.status_code == 200
        html = page.text
        assert 'id="status-reason"' in html and "x-completed" in html
        assert (
            "experiment done (improvement rule): the best feasible value has not improved" in html
        )
        assert "improvement</span>" in html and "by w1" in html
        assert "best now <b>0.9123</b>" in html and "noise source <b>median SEM</b>" in html
        assert "checks" not in html.split('id="status-reason"')[1].split("</div>")[0]
        page = client.get(f"/experiments/{plain.id}", headers=HTML)
        assert page.status_code == 200 and 'id="status-reason"' not in page.text
