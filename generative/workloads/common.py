"""Plumbing shared by the generative job entry points: parameters, seeds, devices, caches.

Every workload in :mod:`assay.generative` exposes ``run(params: dict) -> dict``. The params
dict is the trial's parameters plus any fixed settings; it is resolved against a dataclass of
documented defaults by :func:`resolve_config`, which rejects unknown names and wrong types with
a :class:`~assay.platform.errors.ValidationError` naming the offending parameter, so a typo in
an experiment definition fails the first trial loudly instead of silently using a default.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg:
    ...     lr: float = 1e-3
    ...     steps: int = 10
    >>> resolve_config(Cfg, {"lr": 0.01}, "demo").lr
    0.01
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from assay.platform.errors import ValidationError

C = TypeVar("C")

#: Process-wide memo of trained helper models (base flows, classifiers), keyed by config hash.
_MEMO: dict[str, Any] = {}


def _coerce(name: str, value: Any, annotation: Any, where: str) -> Any:
    """Coerce a JSON-ish value to the field's declared type, or raise ValidationError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0], where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, list | tuple):
            return tuple(value) if origin is tuple else list(value)
    else:  # pragma: no cover - only the simple types above are used in configs
        return value
    raise ValidationError(
        f"{where}: parameter {name!r} must be of type {getattr(annotation, '__name__', annotation)},"
        f" got {value!r}",
        field=name,
    )


def resolve_config(cls: type[C], params: Mapping[str, Any] | None, where: str) -> C:
    """Build the config dataclass ``cls`` from ``params`` (defaults for missing names).

    Args:
        cls: A dataclass whose fields (with defaults) are the job's parameters.
        params: The trial's parameters; ``None`` means all defaults.
        where: Name of the job, used in error messages.

    Raises:
        ValidationError: An unknown parameter name or a value of the wrong type.
    """
    params = dict(params or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValidationError(
            f"{where}: unknown parameter(s) {unknown}; known: {sorted(fields)}",
            field=unknown[0],
        )
    kwargs = {k: _coerce(k, v, hints[k], where) for k, v in params.items()}
    cfg = cls(**kwargs)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


def require(cond: bool, where: str, name: str, message: str) -> None:
    """Raise a ValidationError naming parameter ``name`` unless ``cond`` holds."""
    if not cond:
        raise ValidationError(f"{where}: parameter {name!r} {message}", field=name)


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(
            f"device {name!r} requested but CUDA is not available", field="device"
        )
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); returns a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def config_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (dataclasses allowed)."""

    def enc(p: Any) -> Any:
        if dataclasses.is_dataclass(p) and not isinstance(p, type):
            return dataclasses.asdict(p)
        return p

    blob = json.dumps([enc(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached(
    key: str,
    build: Callable[[], torch.nn.Module],
    *,
    cache_dir: str | None = None,
    factory: Callable[[], torch.nn.Module] | None = None,
) -> torch.nn.Module:
    """Return a trained helper model, building it at most once per process (and per disk cache).

    Jobs such as Adjoint Matching need a pretrained base flow and, for digits, a classifier.
    Each trial of a tuning experiment would otherwise retrain them; this memoises them in the
    process and, when ``cache_dir`` (or ``$ASSAY_GENERATIVE_CACHE``) is set, on disk as a
    ``state_dict`` (``factory`` rebuilds the empty module to load it into).

    Args:
        key: Identity of the model (see :func:`config_key`).
        build: Trains and returns the model (on CPU or any device).
        cache_dir: Optional directory for ``<key>.pt`` files.
        factory: Builds an untrained module of the right shape, needed to load from disk.
    """
    cache_dir = cache_dir or os.environ.get("ASSAY_GENERATIVE_CACHE") or None
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if key in _MEMO:
        # Still fill the disk cache: jobs in other processes (trial subprocesses) read it.
        if path is not None and factory is not None and not path.exists():
            _save_state(_MEMO[key], path)
        return _MEMO[key]
    model: torch.nn.Module | None = None
    if path is not None and factory is not None and path.exists():
        model = factory()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if model is None:
        model = build()
        if path is not None and factory is not None:
            _save_state(model, path)
    model = model.cpu().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _MEMO[key] = model
    return model


def _save_state(model: torch.nn.Module, path: Path) -> None:
    """Write ``model``'s ``state_dict`` to ``path`` atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


class Timer:
    """Wall-clock stopwatch: ``elapsed`` seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def clone_frozen(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` with gradients switched off (e.g. the frozen base model)."""
    import copy

    m = copy.deepcopy(module)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats for a job's return value.

    Raises:
        FloatingPointError: A metric is NaN or infinite (the run diverged). The caller (the
            executor, or the example's ask/tell loop) marks the trial failed; Assay never
            stores non-finite observations.
    """
    out: dict[str, float] = {}
    for k, v in metrics.items():
        f = float(v)
        if not np.isfinite(f):
            raise FloatingPointError(f"metric {k!r} is not finite ({f}); the run diverged")
        out[k] = f
    return out
