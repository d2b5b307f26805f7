"""Checks of a job spec against this environment, run when an experiment is created: an
entry point whose module cannot be found, or that does not define the function, is rejected
before anything is stored (without importing the module or its parent packages, so nothing
of it runs in the API process: the module is looked up on disk, its source only parsed)."""

from __future__ import annotations

import ast
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

from assay.platform.errors import ValidationError
from assay.platform.jobspec import JobSpec


def check_job_spec(spec: JobSpec) -> None:
    """Raise :class:`ValidationError` (field ``job.entrypoint``) for an unusable entry point."""
    if spec.entrypoint is None:
        return
    module, function = spec.module, spec.function
    try:
        found = locate_module(module)
    except (ImportError, ValueError, OSError) as e:
        found, why = None, str(e)
    else:
        why = "no such module"
    if found is None:
        raise ValidationError(
            f"job.entrypoint {spec.entrypoint!r}: module {module!r} cannot be imported ({why}); "
            "install it where the workers run or fix the name",
            field="job.entrypoint",
        )
    origin = found.origin
    if origin and origin.endswith(".py") and Path(origin).exists():
        tree = ast.parse(Path(origin).read_text(encoding="utf-8", errors="replace"))
        names = set()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        if function not in names:
            raise ValidationError(
                f"job.entrypoint {spec.entrypoint!r}: module {module!r} defines no {function!r}",
                field="job.entrypoint",
            )


def locate_module(name: str) -> ModuleSpec | None:
    """The spec of module ``name`` found on disk, importing nothing (``importlib.util.find_spec``
    imports every parent package, i.e. runs their ``__init__``). Packages already imported
    (such as ``assay`` itself) are looked up through their ``__path__``."""
    parts = name.split(".")
    search: list[str] | None = None
    spec: ModuleSpec | None = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        loaded = sys.modules.get(full)
        spec = getattr(loaded, "__spec__", None) if loaded is not None else None
        if spec is None:
            spec = PathFinder.find_spec(full, search)
        if spec is None:
            return None
        if i < len(parts) - 1:
            locations = spec.submodule_search_locations
            if locations is None:
                return None  # a plain module has no submodules
            search = list(locations)
    return spec
