"""Old homes of what moved into :mod:`assay.generative.workloads`, kept working.

Job specs, stored experiments, examples and user code name entry points such as
``assay.generative.adjoint_matching:run`` and import names such as
``assay.generative.adjoint_matching.SEARCH_SPACE``; the workloads now live in
``assay.generative.workloads.<name>``. Each algorithm module keeps ``run``, an alias of its
workload's entry point (:func:`entry_point`), and answers the moved names through a module
``__getattr__`` (:func:`forward`).

Both resolve the new module *by name, when used* (:func:`importlib.import_module`), so an
algorithm module imports nothing of its workload: the dependency runs one way (workloads →
algorithms), importing an algorithm never loads its workload, and there is no import cycle.

Owns the forwarding only. May import :mod:`importlib` and nothing of ``assay``.

Example:
    >>> from assay.generative import dflow
    >>> dflow.DFlowConfig is workload("dflow").DFlowConfig
    True
    >>> dflow.run.__doc__.splitlines()[0]
    'Alias of :func:`assay.generative.workloads.dflow.run`, the canonical job entry point'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

#: The package of the workloads.
WORKLOADS = "assay.generative.workloads"


def workload(name: str) -> ModuleType:
    """The workload module ``assay.generative.workloads.<name>`` (imported on first use)."""
    return importlib.import_module(f"{WORKLOADS}.{name}")


def entry_point(module: str, name: str) -> Callable[..., dict[str, float]]:
    """``run(params)``: an alias that imports workload ``name`` when called and runs its ``run``.

    Args:
        module: The old module's ``__name__``; the alias is its ``run`` (for pickling and docs).
        name: The workload (a module of :mod:`assay.generative.workloads`).
    """

    def run(params: Mapping[str, Any] | None = None) -> dict[str, float]:
        return workload(name).run(params)

    run.__module__, run.__qualname__ = module, "run"

    run.__doc__ = (
        f"Alias of :func:`{WORKLOADS}.{name}.run`, the canonical job entry point\n"
        f"``{WORKLOADS}.{name}:run``, kept so that job specs, stored experiments and code\n"
        "naming the old entry point keep working."
    )
    return run


def forward(module: str, **moved: tuple[str, ...]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that answers names moved into the workloads package.

    Args:
        module: The old module's ``__name__`` (for the error of an unknown name).
        moved: For each module of :mod:`assay.generative.workloads` (by name), the names that
            moved there, e.g. ``gsbm=("GSBMConfig", "SEARCH_SPACE")``.

    Returns:
        ``__getattr__(name)``: the attribute ``name`` of the module it moved to.
    """
    homes = {name: f"{WORKLOADS}.{home}" for home, names in moved.items() for name in names}

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__


__all__ = ["WORKLOADS", "entry_point", "forward", "workload"]
