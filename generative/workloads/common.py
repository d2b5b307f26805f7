"""Plumbing shared by the job workloads: the config base, parameter checks, seeds, devices.

Every workload in :mod:`assay.generative.workloads` exposes ``run(params: dict) -> dict``. The
params dict is the trial's parameters plus any fixed settings; it is resolved against the
workload's config dataclass (a :class:`WorkloadConfig`) by :func:`resolve_config`, which rejects
unknown names and wrong types with a :class:`~assay.platform.errors.ValidationError` naming the
offending parameter, so a typo in an experiment definition fails the first trial loudly instead
of silently using a default. :class:`WorkloadRun` is the start (config, seeds, device,
stopwatch) and the end (final report, finite metrics) that every workload shares.

Owns the config base and the run plumbing. May import torch, numpy,
:mod:`assay.platform.errors` and ``assay.report``; no algorithm module (they do not import
this either) and nothing of ``assay.service`` or ``assay.storage``.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg(WorkloadConfig):
    ...     workload = "demo"
    ...     lr: float = 1e-3
    ...     steps: int = 10
    >>> resolve_config(Cfg, {"lr": 0.01}).lr
    0.01
    >>> job = WorkloadRun.start(Cfg, {"steps": 2, "device": "cpu"})
    >>> job.finish({"loss": 0.5}, step=job.config.steps)["loss"]
    0.5
"""

from __future__ import annotations

import dataclasses
import random
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

import assay
from assay.platform.errors import ValidationError


@dataclass
class WorkloadConfig:
    """The parameters every workload has; a workload's config extends it with its own.

    A subclass sets :attr:`workload` (its name in error messages), may give these fields other
    defaults by declaring them again, and checks its own fields in ``validate`` after calling
    ``super().validate()``.

    Attributes:
        seed: Random seed of python, numpy and torch (:func:`seed_everything`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
        cache_dir: Disk cache of the pretrained helper models (base flows, the digits
            classifier; :func:`~assay.generative.workloads.pretrained.cached`); empty:
            ``$ASSAY_GENERATIVE_CACHE``, else none. Workloads that train no helper model
            ignore it.
        report_every: Progress-report period, in the workload's own unit (optimiser steps,
            L-BFGS evaluations, epochs); 0: only the final report.
    """

    #: The workload's name in error messages.
    workload: ClassVar[str] = "workload"

    seed: int = 0
    device: str = "auto"
    cache_dir: str = ""
    report_every: int = 0

    def require(self, cond: bool, name: str, message: str) -> None:
        """Raise a ValidationError naming parameter ``name`` unless ``cond`` holds."""
        require(cond, self.workload, name, message)

    def at_least(self, **bounds: int) -> None:
        """Require each named parameter to be ``>=`` its bound, in the order given."""
        for name, low in bounds.items():
            self.require(getattr(self, name) >= low, name, f"must be >= {low}")

    def positive(self, *names: str) -> None:
        """Require each named parameter to be ``> 0``, in the order given."""
        for name in names:
            self.require(getattr(self, name) > 0, name, "must be > 0")

    def validate(self) -> None:
        """Check the values (called by :func:`resolve_config`)."""
        self.at_least(report_every=0)


C = TypeVar("C", bound=WorkloadConfig)


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


def resolve_config(cls: type[C], params: Mapping[str, Any] | None, where: str | None = None) -> C:
    """Build the config dataclass ``cls`` from ``params`` (defaults for missing names).

    Args:
        cls: The workload's config dataclass (all fields with defaults).
        params: The trial's parameters; ``None`` means all defaults.
        where: Name of the job in error messages (default: ``cls.workload``).

    Raises:
        ValidationError: An unknown parameter name or a value of the wrong type.
    """
    where = where or cls.workload
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
    cfg.validate()
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


class Timer:
    """Wall-clock stopwatch: ``elapsed`` seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


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


@dataclass
class WorkloadRun(Generic[C]):
    """One run of a workload: its resolved config, seeded generator, device and stopwatch.

    :meth:`start` is the first line of every workload's ``run`` and :meth:`finish` its last.

    Args:
        config: The resolved, validated parameters.
        generator: CPU generator seeded with ``config.seed`` (python, numpy and torch are
            seeded too).
        device: The device to compute on.
        timer: Started before seeding; ``wall_time_s`` is its reading at :meth:`finish`.
    """

    config: C
    generator: torch.Generator
    device: torch.device
    timer: Timer

    @classmethod
    def start(cls, config_cls: type[C], params: Mapping[str, Any] | None) -> WorkloadRun[C]:
        """Resolve ``params`` against ``config_cls``, start the stopwatch, seed, pick the device.

        Raises:
            ValidationError: An unknown parameter, a wrong type or value, or CUDA requested
                where there is none.
        """
        cfg = resolve_config(config_cls, params)
        timer = Timer()
        generator = seed_everything(cfg.seed)
        return cls(cfg, generator, pick_device(cfg.device), timer)

    @property
    def cache_dir(self) -> str | None:
        """The helper-model disk cache (``None``: ``$ASSAY_GENERATIVE_CACHE`` or none)."""
        return self.config.cache_dir or None

    def finish(self, metrics: dict[str, float], *, step: int) -> dict[str, float]:
        """The job's return value: adds ``wall_time_s`` (unless set), reports every metric at
        ``step`` with ``assay.report`` and returns them as finite floats.

        Raises:
            FloatingPointError: A metric is NaN or infinite (see :func:`finite_metrics`).
        """
        metrics.setdefault("wall_time_s", self.timer.elapsed)
        assay.report(step=step, **metrics)
        return finite_metrics(metrics)
