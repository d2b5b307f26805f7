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
