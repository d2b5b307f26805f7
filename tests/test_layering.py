"""The rooms' import rules (docs/architecture.md), checked on every import in every module —
top-level, function-level, under ``TYPE_CHECKING`` alike — and no import cycle between modules.

The import graph is read from the source with :mod:`ast` (nothing is imported): an edge
``a -> b`` for each ``import b`` / ``from b import x`` in module ``a``, resolved to the longest
name that is a module of the package (``from assay.platform import space`` is an edge to
``assay.platform.space``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("platform", "storage", "service", "generative", "dashboards")


def _module_name(path: Path) -> str:
    parts = ["assay", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the ``assay`` package: the root's (``__init__``, ``plots``) and the
    rooms' files."""
    found = {"assay": root / "__init__.py"}
    for path in sorted(root.glob("*.py")):
        if path.name != "__init__.py":
            found[_module_name(path)] = path
    for room in ROOMS:
        for path in sorted((root / room).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic scripts: loaded by Alembic, not imported
                continue
            found[_module_name(path)] = path
    return found


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``None``: not ours)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> set[tuple[str, int]]:
    """``(imported module, line)`` for every import of an ``assay`` module in ``path``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        for name in names:
            target = _resolve(name, modules) if name.startswith("assay") else None
            if target is not None and target != module:
                out.add((target, node.lineno))
    return out


def import_graph() -> dict[str, set[tuple[str, int]]]:
    modules = package_modules()
    names = set(modules)
    return {m: imports_of(m, p, names) for m, p in modules.items()}


def room_of(module: str) -> str:
    """The room a module lives in; the package root's own modules are the room ``assay``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "assay"


#: Which rooms each room may import (besides itself). The package root ``assay`` is the job
#: API (``assay.report``/``assay.heartbeat``), the version and the public names users import.
ALLOWED: dict[str, set[str]] = {
    "platform": set(),
    "storage": {"platform"},
    "generative": {"platform", "assay"},
    "dashboards": {"platform", "storage", "service", "assay"},
    "service": {"platform", "storage", "generative", "dashboards", "assay"},
    "assay": {"platform", "service"},
}

#: What of ``service`` the dashboard may use: its public surface for pages (who is calling,
#: the request dependencies, the status of an error, the settings, and the safe reader of a
#: job's log for the trial page) — never the engine's internals, the rest of the jobs package
#: (orchestrator, executors) or the app.
DASHBOARD_MAY_USE_OF_SERVICE = {
    "assay.service.auth",
    "assay.service.deps",
    "assay.service.errors",
    "assay.service.settings",
    "assay.service.jobs.logfiles",
}

#: The only module of ``service`` that may import ``dashboards`` (to mount it).
MOUNTS_DASHBOARD = {"assay.service.app"}

#: Root modules that only give a room's public module a short name for users, and the one
#: module each may import: ``from assay import plots`` is :mod:`assay.dashboards.plots`.
#: (The package root ``assay/__init__`` itself still may not import ``dashboards``.)
ROOT_ALIASES = {"assay.plots": {"assay.dashboards.plots"}}


def violations(graph: dict[str, set[tuple[str, int]]]) -> list[str]:
    found = []
    for module, edges in graph.items():
        src = room_of(module)
        for target, line in sorted(edges):
            dst = room_of(target)
            where = f"{module}:{line} imports {target}"
            if module in ROOT_ALIASES:
                if target not in ROOT_ALIASES[module]:
                    found.append(f"{where} ({module} may import only {ROOT_ALIASES[module]})")
            elif target in ROOT_ALIASES:
                found.append(f"{where} (a root alias is for users; import {target}'s module)")
            elif dst != src and dst not in ALLOWED[src]:
                found.append(f"{where} ({src} may import only {sorted(ALLOWED[src])})")
            elif src == "dashboards" and dst == "service":
                if target not in DASHBOARD_MAY_USE_OF_SERVICE:
                    found.append(f"{where} (not service's public surface for pages)")
            elif src == "service" and dst == "dashboards" and module not in MOUNTS_DASHBOARD:
                found.append(f"{where} (only {sorted(MOUNTS_DASHBOARD)} mounts the dashboard)")
    return found


def cycles(graph: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    edges = {m: sorted({t for t, _ in e}) for m, e in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_import_respects_the_rooms() -> None:
    found = violations(import_graph())
    assert not found, "layering violations:\n" + "\n".join(found)


def test_no_import_cycles_between_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_private_name_is_imported_across_modules() -> None:
    """A helper two modules share is public in one of them (``from a import _x`` is refused)."""
    modules = package_modules()
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("assay"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{module}:{node.lineno} imports {node.module}.{alias.name}")
    assert not found, "\n".join(found)


# -- the checker itself can fail --------------------------------------------------------------
def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "platform").mkdir()
    bad = tmp_path / "platform" / "bad.py"
    bad.write_text(
        "def f():\n"
        "    from assay.service import engine\n"
        "    from ..storage import base\n"
        "    return engine, base\n"
    )
    modules = {"assay.platform.bad", "assay.service.engine", "assay.storage.base"}
    edges = imports_of("assay.platform.bad", bad, modules)
    assert {t for t, _ in edges} == {"assay.service.engine", "assay.storage.base"}
    found = violations({"assay.platform.bad": edges})
    assert len(found) == 2 and all("platform may import only []" in f for f in found)


def test_platform_does_no_file_io() -> None:
    """``platform/`` is pure: no module of it opens, reads or writes files (``open``,
    ``os.open``/``os.fdopen``, ``pathlib`` reads and writes)."""
    calls = {"open", "fdopen", "read_text", "read_bytes", "write_text", "write_bytes"}
    found = []
    for name, path in package_modules().items():
        if room_of(name) != "platform":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
                if called in calls:
                    found.append(f"{name}:{node.lineno} calls {called}()")
    assert not found, "\n".join(found)


def test_a_root_alias_imports_only_what_it_names() -> None:
    """``assay.plots`` may import ``assay.dashboards.plots`` and nothing else, no module of
    the package imports it, and the package root may not import ``dashboards`` at all."""
    ok = {"assay.plots": {("assay.dashboards.plots", 16)}}
    assert violations(ok) == []
    bad = {
        "assay.plots": {("assay.service.engine", 3)},
        "assay": {("assay.dashboards.plots", 5)},
        "assay.generative.x": {("assay.plots", 7)},
    }
    found = violations(bad)
    assert len(found) == 3, found
    assert any("assay.plots:3" in f for f in found) and any("assay:5" in f for f in found)
    assert any("a root alias is for users" in f for f in found)
    assert "assay.plots" in package_modules()  # the real file is checked with the rest


def test_the_checker_finds_a_cycle() -> None:
    graph = {"assay.a.x": {("assay.a.y", 1)}, "assay.a.y": {("assay.a.z", 1)},
             "assay.a.z": {("assay.a.x", 3)}, "assay.a.w": {("assay.a.x", 1)}}  # fmt: skip
    assert cycles(graph) == [["assay.a.x", "assay.a.y", "assay.a.z"]]


@pytest.mark.parametrize("room", ROOMS)
def test_each_module_docstring_says_what_it_owns(room: str) -> None:
    """Every module has a docstring (the rooms' new modules say what they own and may import)."""
    missing = [
        name
        for name, path in package_modules().items()
        if room_of(name) == room and ast.get_docstring(ast.parse(path.read_text())) is None
        and path.stat().st_size > 0
    ]  # fmt: skip
    assert not missing, missing
