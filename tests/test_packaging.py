"""The `platform/` folder must never shadow the standard library's `platform` module, and the
built wheel must contain a working `assay` package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

STDLIB_DIR = os.path.dirname(os.__file__)


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_import_platform_from_repo_root_is_stdlib(repo_root: Path) -> None:
    r = _run([sys.executable, "-c", "import platform; print(platform.__file__)"], repo_root)
    assert r.returncode == 0, r.stderr
    where = Path(r.stdout.strip())
    assert where.parent == Path(STDLIB_DIR), where
    assert not str(where).startswith(str(repo_root))


def test_import_torch_from_repo_root(repo_root: Path) -> None:
    code = "import torch, platform; print(platform.__file__); print(platform.machine())"
    r = _run([sys.executable, "-c", code], repo_root)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.splitlines()[0]).parent == Path(STDLIB_DIR)


def test_pytest_collection_from_repo_root_keeps_stdlib_platform(repo_root: Path) -> None:
    code = (
        "import sys, pytest\n"
        "rc = pytest.main(['--co', '-q', 'tests/test_packaging.py'])\n"
        "import platform\n"
        "print('PLATFORM', platform.__file__)\n"
        "sys.exit(rc)\n"
    )
    r = _run([sys.executable, "-c", code], repo_root)
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("PLATFORM"))
    assert Path(line.split()[1]).parent == Path(STDLIB_DIR)
    r = _run([sys.executable, "-m", "pytest", "--co", "-q", "tests/test_packaging.py"], repo_root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_assay_platform_is_the_core(repo_root: Path) -> None:
    code = "import assay.platform.space as s, platform; print(s.__file__); print(platform.__file__)"
    r = _run([sys.executable, "-c", code], repo_root)
    assert r.returncode == 0, r.stderr
    core, stdlib = r.stdout.split()
    assert Path(core).is_relative_to(repo_root / "platform")
    assert Path(stdlib).parent == Path(STDLIB_DIR)


@pytest.mark.slow
def test_wheel_builds_and_imports(repo_root: Path, tmp_path: Path) -> None:
    r = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(repo_root)],
        tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = list((tmp_path / "dist").glob("assay-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "assay/platform/space.py" in names
    assert "assay/__init__.py" in names
    assert "assay/plots.py" in names  # `from assay import plots`
    for asset in (
        "templates/experiment.html",
        "static/app.js",
        "static/vendor/plotly-assay.min.js",
    ):
        assert f"assay/dashboards/{asset}" in names, asset
    assert not any(n.startswith("platform/") for n in names), "top-level platform/ in wheel"
    assert not any(n.startswith("tests/") or n.startswith("assay/tests/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import assay, platform\n"
        "from assay.platform.space import SearchSpace\n"
        "from assay.platform.generators import get_generator\n"
        "assert assay.__file__.startswith(sys.argv[1]), assay.__file__\n"
        "assert not platform.__file__.startswith(sys.argv[1])\n"
        "from assay.dashboards.routes import STATIC, TEMPLATES\n"
        "assert (TEMPLATES / 'experiment.html').is_file()\n"
        "assert (STATIC / 'vendor' / 'plotly-assay.min.js').is_file()\n"
        "c = assay.Client()\n"
        "e = c.create_experiment(name='w', parameters=[{'name': 'x', 'type': 'float', "
        "'bounds': [0, 1]}], objective='y')\n"
        "print(len(c.ask(e.id)))\n"
    )
    r = _run([sys.executable, "-c", code, str(site)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
