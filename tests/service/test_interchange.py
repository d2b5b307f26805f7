"""Import and export: the versioned document round-trips losslessly on every backend (the
test compares), an imported experiment keeps optimizing with its imported data, a bad
document stores nothing, and files made by real Ax and Optuna import with a report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assay.platform.errors import ConflictError, ValidationError
from assay.service.app import create_app
from assay.service.cli import main
from assay.service.interchange import comparable
from assay.service.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


def make_experiment(client, name: str, generator: str = "sobol"):
    exp = client.create_experiment(
        name=name,
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "lr", "type": "float", "bounds": [1e-4, 1e-1], "log": True},
            {"name": "k", "type": "choice", "values": ["a", "b"]},
        ],
        objective={"name": "y", "minimize": True},
        outcome_constraints=["c <= 1"],
        tracking_metrics=["t"],
        generator=generator,
        generator_settings={"n_initial": 20} if generator == "noisy_ei" else {},
        seed=3,
        description="round trip",
    )
    for i in range(5):
        [t] = client.ask(exp.id)
        x = t.parameters["x"]
        client.tell(t.id, {"y": ((x - 0.3) ** 2, 0.01), "c": (x, 0.0, 10), "t": 1.0 + i})
    [failed] = client.ask(exp.id)
    client.fail(failed.id, "diverged")
    manual = client.attach_trial(exp.id, {"x": 0.5, "lr": 0.01, "k": "b"})
    client.abandon(manual.id, "not needed")
    client.ask(exp.id)  # left running
    return client.get_experiment(exp.id)


def test_round_trip_is_lossless_and_the_import_keeps_optimizing(client) -> None:
    name = f"rt-{client.mode}"
    exp = make_experiment(client, name, generator="noisy_ei")
    doc = client.export_experiment(exp.id)
    assert doc["format"] == "assay.experiment" and doc["version"] == 1
    assert len(doc["trials"]) == 8
    json.dumps(doc)  # plain JSON

    result = client.import_experiment(doc, name=f"{name}-copy")
    again = client.export_experiment(result.experiment.id)
    a, b = comparable(doc), comparable(again)
    assert b["experiment"].pop("name") == f"{name}-copy"
    a["experiment"].pop("name")
    assert a == b
    assert result.report.source == "assay" and result.report.trials == 8

    copy = result.experiment
    assert [t.state.value for t in copy.trials] == [t.state.value for t in exp.trials]
    [t] = client.ask(copy.id)
    assert t.index == 8

    # an import keeps optimizing with the imported data: with a short initial design the
    # next ask fits the GP on the 5 imported observations
    doc["experiment"]["generator_settings"] = {"n_initial": 4}
    gp = client.import_experiment(doc, name=f"{name}-gp").experiment
    [t] = client.ask(gp.id)
    assert t.generator == "noisy_ei" and "fit_seconds" in t.metadata["generation"], t.metadata

    with pytest.raises(ConflictError):  # the name is taken
        client.import_experiment(doc)


def test_an_experiment_without_trials_round_trips(client) -> None:
    exp = client.create_experiment(
        name=f"empty-{client.mode}",
        parameters=[{"name": "x", "type": "float", "bounds": [0.0, 1.0]}],
        objective="y",
    )
    doc = client.export_experiment(exp.id)
    assert doc["trials"] == []
    result = client.import_experiment(doc, name=f"empty-{client.mode}-copy")
    assert result.report.trials == 0 and result.experiment.trials == []
    [t] = client.ask(result.experiment.id)  # and it starts optimizing
    assert t.index == 0


def test_a_bad_document_stores_nothing(client) -> None:
    exp = make_experiment(client, f"bad-{client.mode}")
    doc = client.export_experiment(exp.id)
    before = len(client.list_experiments())
    broken = json.loads(json.dumps(doc))
    broken["trials"][-1]["arms"][0]["parameters"]["x"] = 7.0  # outside the bounds
    with pytest.raises(ValidationError) as e:
        client.import_experiment(broken, name="broken-1")
    assert "x" in str(e.value)
    broken = json.loads(json.dumps(doc))
    broken["version"] = 99
    with pytest.raises(ValidationError):
        client.import_experiment(broken, name="broken-2")
    broken = json.loads(json.dumps(doc))
    broken["trials"][0]["observations"] = {}  # a completed trial without data
    with pytest.raises(ValidationError):
        client.import_experiment(broken, name="broken-3")
    assert len(client.list_experiments()) == before


def test_import_over_rest_names_the_field(store) -> None:
    with TestClient(create_app(Settings(auth="none"), store=store)) as api:
        r = api.post(
            "/api/v1/experiments:import",
            json={"document": {"format": "assay.experiment", "version": 2}},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"]["field"] == "document.version"
        assert api.get("/api/v1/experiments").json()["experiments"] == []
        snapshot = json.loads((FIXTURES / "ax_client.json").read_text())
        r = api.post("/api/v1/experiments:import", json={"document": snapshot, "source": "ax"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["experiment"]["name"] == "ax_demo" and body["report"]["trials"] == 5
        exported = api.get(f"/api/v1/experiments/{body['experiment']['id']}/export")
        assert exported.status_code == 200 and len(exported.json()["trials"]) == 5


def check_ax_import(result) -> None:
    exp = result.experiment
    cfg = exp.config
    assert cfg.search_space.names == ["x", "lr", "k"]
    assert cfg.objective.name == "loss" and cfg.objective.minimize
    assert [c.expression for c in cfg.outcome_constraints] == ["cost <= 2"]
    states = [t.state.value for t in exp.trials]
    assert states == ["completed"] * 4 + ["failed"]
    first = exp.trials[0]
    assert first.values["loss"].mean == pytest.approx(0.04) and first.values["loss"].sem == 0.01
    assert any("generation strategy" in x for x in result.report.not_carried)


def test_ax_client_snapshot_imports_and_keeps_optimizing(client) -> None:
    result = client.import_ax(str(FIXTURES / "ax_client.json"), name=f"ax-{client.mode}")
    check_ax_import(result)
    [t] = client.ask(result.experiment.id)
    assert t.index == 5


def check_optuna_import(result) -> None:
    exp = result.experiment
    cfg = exp.config
    space = {p["name"]: p for p in cfg.search_space.to_dict()["parameters"]}
    assert space["x"]["log"] and space["layers"]["type"] == "int"
    assert space["opt"]["values"] == ["adam", "sgd"]
    assert cfg.objective.name == "value" and cfg.objective.minimize
    states = [t.state.value for t in exp.trials]
    assert states == ["completed"] * 3 + ["failed", "early_stopped", "completed", "completed"]
    assert exp.trials[0].metadata["optuna"]["user_attrs"]["note"].startswith("n=")
    assert any("intermediate values" in x for x in result.report.not_carried)


@pytest.mark.parametrize("kind", ["journal", "rdb"])
def test_optuna_study_imports(client, kind) -> None:
    pytest.importorskip("optuna")
    storage = (
        str(FIXTURES / "optuna_journal.log")
        if kind == "journal"
        else f"sqlite:///{FIXTURES / 'optuna.db'}"
    )
    result = client.import_optuna(storage, name=f"optuna-{kind}-{client.mode}")
    check_optuna_import(result)


def test_optuna_import_lists_what_it_leaves_behind() -> None:
    """Steps, a second objective, system and study attributes, a non-finite value: each is
    named in the report; the rest is carried."""
    optuna = pytest.importorskip("optuna")
    from assay.service.interchange import from_optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["minimize", "maximize"]
    )
    study.set_user_attr("owner", "team-a")
    dists = {"x": optuna.distributions.FloatDistribution(0, 1, step=0.25)}
    for k, values in enumerate([[0.5, 1.0], [float("inf"), 2.0]]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.25 * k}, distributions=dists, values=values,
                system_attrs={"nsga2:generation": 0},
            )
        )  # fmt: skip
    doc = from_optuna(storage, "s")
    report = "\n".join(doc["not_carried"])
    for needed in (
        "parameter x: step 0.25",
        "objectives ['value_1']",
        "trial 1: non-finite",
        "system attributes of 2 trial(s)",
        "user attributes ['owner']",
        "sampler",
    ):
        assert needed in report, (needed, report)  # fmt: skip
    assert [t["state"] for t in doc["trials"]] == ["completed", "failed"]
    assert doc["trials"][0]["observations"]["0_0"]["value_1"]["mean"] == 1.0


def test_cli_export_and_import(tmp_path, capsys) -> None:
    import assay

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with assay.Client(url) as c:
        exp = make_experiment(c, "cli")
    out = tmp_path / "exp.json"
    assert main(["export", str(exp.id), "--out", str(out), "--url", url]) == 0
    assert json.loads(out.read_text())["experiment"]["name"] == "cli"
    assert main(["import", str(out), "--name", "cli-copy", "--url", url]) == 0
    assert main(["import", str(FIXTURES / "ax_client.json"), "--url", url]) == 0
    printed = capsys.readouterr().out
    assert "'cli-copy' (8 trials)" in printed and "not carried: the generation strategy" in printed
    with assay.Client(url) as c:
        names = sorted(e.name for e in c.list_experiments())
    assert names == ["ax_demo", "cli", "cli-copy"]


@pytest.mark.slow
def test_fixture_script_runs_live(tmp_path) -> None:
    """The committed script makes the fixture files with the installed Ax and Optuna; what it
    makes today imports the same way as the committed files."""
    pytest.importorskip("ax")
    pytest.importorskip("optuna")
    script = FIXTURES / "make_interchange_fixtures.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=600)
    import assay

    with assay.Client() as c:
        check_ax_import(c.import_ax(str(tmp_path / "ax_client.json")))
        check_optuna_import(c.import_optuna(str(tmp_path / "optuna_journal.log")))
