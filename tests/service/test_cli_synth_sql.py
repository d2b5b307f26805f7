"""``assay synth`` on the SQL ledger: ``--database-url`` / ``$ASSAY_DATABASE_URL`` select the
Assay database (shared with the REST API), ``--ledger`` the offline JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from assay.generative.tabular.data import AB_LOGS_SCHEMA, ab_logs
from assay.service.cli import main
from assay.storage.factory import open_store


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # the default JSON ledger would land in ./.assay/
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("ASSAY_PRIVACY_LEDGER", raising=False)
    _, table = ab_logs(300, seed=4)
    pd.DataFrame(table).to_csv(tmp_path / "ab.csv", index=False)
    (tmp_path / "schema.json").write_text(json.dumps(AB_LOGS_SCHEMA))
    url = f"sqlite:///{tmp_path / 'assay.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    return {"url": url, "dir": str(tmp_path)}


def _status(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["synth", "status", "ab", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_database_ledger_is_shared_with_the_store(env, capsys) -> None:
    db = ["--database-url", env["url"]]
    assert main(["synth", "budget", "ab", "--epsilon", "2", *db]) == 0
    out = f"{env['dir']}/syn.csv"
    release = ["synth", "release", f"{env['dir']}/ab.csv", "--schema",
               f"{env['dir']}/schema.json", "--dataset", "ab", "--out", out,
               "--method", "mst", *db]  # fmt: skip
    assert main([*release, "--epsilon", "1.5", "--release-id", "cli-1"]) == 0
    assert len(pd.read_csv(out)) == 300
    st = _status(capsys, *db)
    assert st["epsilon_spent"] == 1.5 and [c["release_id"] for c in st["charges"]] == ["cli-1"]
    # the server's view of the same database (project "default")
    store = open_store(env["url"])
    assert store.privacy_ledger("default").status("ab").releases == 1
    store.close()
    # over budget: refused, nothing written
    assert main([*release, "--epsilon", "1.0", "--release-id", "cli-2"]) == 3
    assert _status(capsys, *db)["releases"] == 1
    assert not Path(".assay/privacy_ledger.json").exists()


def test_environment_url_projects_and_the_offline_json_ledger(env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ASSAY_DATABASE_URL", env["url"])
    assert main(["synth", "budget", "ab", "--epsilon", "3", "--project", "growth"]) == 0
    assert _status(capsys, "--project", "growth")["epsilon_budget"] == 3
    assert main(["synth", "status", "ab"]) == 2  # the default project has no such budget
    assert "no privacy budget" in capsys.readouterr().err
    # --ledger: the offline JSON file, not the database
    assert main(["synth", "budget", "ab", "--epsilon", "7", "--ledger", "l.json"]) == 0
    assert json.loads(Path("l.json").read_text())["datasets"]["ab"]["epsilon"] == 7
    assert _status(capsys, "--project", "growth")["epsilon_budget"] == 3
    both = ["synth", "status", "ab", "--ledger", "l.json", "--database-url", env["url"]]
    assert main(both) == 2
    assert "not both" in capsys.readouterr().err


def test_out_of_date_database_names_the_upgrade_command(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["synth", "budget", "ab", "--epsilon", "1", "--database-url", url]) == 2
    assert "assay db upgrade" in capsys.readouterr().err
