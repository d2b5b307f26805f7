"""Assay: self-hosted adaptive experimentation.

Noisy-constrained Bayesian optimization (Letham et al. 2019) and multi-step lookahead
(Jiang et al. 2020) on BoTorch, with every trial in SQL, trial jobs on workers, a REST API,
a Python client and a live dashboard.

>>> import assay
>>> client = assay.Client()                      # doctest: +SKIP

Heavy modules (torch, botorch) load on first use, so ``import assay`` stays cheap inside jobs.
"""

from __future__ import annotations

import importlib
from typing import Any

from assay.platform.errors import (
    AssayError,
    ConflictError,
    ConstraintParseError,
    GenerationError,
    InvalidTransitionError,
    ModelFitError,
    NotFoundError,
    ObservationError,
    SearchSpaceError,
    UnsupportedError,
    ValidationError,
)
from assay.service.reporting import heartbeat, report

__version__ = "0.1.0"

_LAZY = {
    "Client": "assay.service.client",
    "Float": "assay.platform.space",
    "Int": "assay.platform.space",
    "Choice": "assay.platform.space",
    "Fixed": "assay.platform.space",
    "SearchSpace": "assay.platform.space",
    "TrialState": "assay.platform.experiment",
    "ExperimentStatus": "assay.platform.experiment",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'assay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AssayError",
    "ConflictError",
    "ConstraintParseError",
    "GenerationError",
    "InvalidTransitionError",
    "ModelFitError",
    "NotFoundError",
    "ObservationError",
    "SearchSpaceError",
    "UnsupportedError",
    "ValidationError",
    "heartbeat",
    "report",
    *_LAZY,
]
