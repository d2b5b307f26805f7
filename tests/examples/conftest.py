"""The examples are scripts, not modules of the package: each test file loads its script as
``example`` (the file named by the test module: ``test_tune_X_example.py`` → ``tune_X.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def example(request, repo_root: Path):
    stem = Path(request.module.__file__).stem.removeprefix("test_").removesuffix("_example")
    path = repo_root / "examples" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"{stem}_example", path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def tiny_run(tmp_path: Path, one_torch_thread):
    """``tiny_run(example) -> summary``: the example's ``main`` with a budget of two tiny CPU
    trials in a fresh SQLite file; both trials must complete and the run end ``done``."""

    def run(example) -> dict:
        url = f"sqlite:///{tmp_path / 't.db'}"
        summary = example.main(["--budget", "2", "--tiny", "--device", "cpu",
                                "--database-url", url, "--log-dir", str(tmp_path / "logs"),
                                "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
        assert summary["run_state"] == "done"
        assert [t["state"] for t in summary["trials"]] == ["completed", "completed"], summary
        return summary

    return run


def assert_stored_run(example, summary: dict, constraint_metric: str, observed: set[str]):
    """What the orchestrator stored for a tiny run: the one outcome constraint on
    ``constraint_metric`` at the summary's bound, the example's job entry point, and the
    ``observed`` metrics on every trial. Returns the experiment."""
    from assay.storage.factory import open_store

    store = open_store(summary["database_url"], migrate=False)
    try:
        exp = store.get_experiment(summary["experiment_id"])
    finally:
        store.close()
    [constraint] = exp.config.outcome_constraints
    assert constraint.metric == constraint_metric
    assert constraint.bound == pytest.approx(summary["bound"], rel=1e-5)
    assert exp.config.job is not None and exp.config.job.entrypoint == example.ENTRYPOINT
    for t in exp.trials:
        assert observed <= set(t.values), t.values
    return exp


@pytest.fixture
def stored_run():
    """:func:`assert_stored_run` for the tests (conftest modules are not imported by name)."""
    return assert_stored_run
