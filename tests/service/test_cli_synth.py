"""``assay synth``: a DP release writes rows + report and charges the ledger; an over-budget
release is refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from assay.generative.tabular.data import AB_LOGS_SCHEMA, ab_logs
from assay.generative.tabular.schema import RowCodec, TableSchema
from assay.service.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    _, table = ab_logs(800, seed=2)
    pd.DataFrame(table).to_csv(tmp_path / "ab.csv", index=False)
    (tmp_path / "schema.json").write_text(json.dumps(AB_LOGS_SCHEMA))
    return {
        "csv": str(tmp_path / "ab.csv"),
        "schema": str(tmp_path / "schema.json"),
        "ledger": str(tmp_path / "ledger.json"),
        "dir": str(tmp_path),
    }


def _release(files, out, *extra):
    return main(["synth", "release", files["csv"], "--schema", files["schema"],
                 "--ledger", files["ledger"], "--dataset", "ab", "--out", out, *extra])  # fmt: skip


@pytest.mark.slow
def test_release_writes_schema_valid_rows_report_and_charges(files, capsys):
    assert main(["synth", "budget", "ab", "--epsilon", "4", "--ledger", files["ledger"]]) == 0
    out = f"{files['dir']}/syn.csv"
    rc = _release(files, out, "--epsilon", "3", "--epochs", "1", "--d-model", "16",
                  "--n-layers", "1", "--rows", "200")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    synth = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(synth.columns) == TableSchema.from_dict(AB_LOGS_SCHEMA).names and len(synth) == 200
    schema = TableSchema.from_dict(AB_LOGS_SCHEMA)
    RowCodec(schema).to_codes(synth)  # parses back through the schema
    for col in schema.columns:
        if col.kind == "categorical":
            assert set(synth[col.name]) <= set(col.labels)
        else:
            values = synth[col.name].astype(float)
            assert values.between(col.lower, col.upper).all()
    report = json.loads(Path(f"{out}.privacy.json").read_text())
    assert report["mechanism"]["name"] == "dp_sgd_tabular_lm"
    assert report["epsilon_spent"] <= 3.0 + 1e-6
    assert report["ledger"]["epsilon_spent"] == pytest.approx(3.0)
    recon = report["reconstruction"]
    assert recon["columns"]["revenue"]["diameter"] == 10000.0 and "threat_model" in recon

    # over budget: refused (exit 3), no output, ledger unchanged
    ledger_before = Path(files["ledger"]).read_text()
    out2 = f"{files['dir']}/syn2.csv"
    assert _release(files, out2, "--epsilon", "1.5", "--method", "mst") == 3
    assert "refused" in capsys.readouterr().err
    assert not Path(out2).exists() and not Path(f"{out2}.privacy.json").exists()
    assert Path(files["ledger"]).read_text() == ledger_before

    # the baseline fits in what is left
    assert _release(files, out2, "--epsilon", "0.9", "--method", "mst") == 0
    status = json.loads(Path(files["ledger"]).read_text())["datasets"]["ab"]
    assert [c["epsilon"] for c in status["charges"]] == [3.0, 0.9]


def test_parquet_without_pyarrow_fails_before_charging(files, capsys):
    pytest.importorskip("pandas")
    main(["synth", "budget", "ab", "--epsilon", "4", "--ledger", files["ledger"]])
    out = f"{files['dir']}/syn.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert _release(files, out, "--epsilon", "1", "--method", "mst") == 2
        assert "pyarrow" in capsys.readouterr().err
        assert json.loads(Path(files["ledger"]).read_text())["datasets"]["ab"]["charges"] == []
    else:
        assert _release(files, out, "--epsilon", "1", "--method", "mst") == 0
        assert len(pd.read_parquet(out)) == 800


def test_bad_schema_is_a_clear_error(files, capsys):
    Path(files["schema"]).write_text('{"columns": [{"name": "x", "type": "date"}]}')
    main(["synth", "budget", "ab", "--epsilon", "4", "--ledger", files["ledger"]])
    assert _release(files, f"{files['dir']}/o.csv", "--epsilon", "1") == 2
    assert "columns[0]" in capsys.readouterr().err
