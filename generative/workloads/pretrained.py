"""Pretrained helper models the workloads start from, trained once per process (and per disk
cache): the flow-matching base models on the 2-D toys and on the digits, and the digits
classifier whose log-probability is a reward and whose features score realism.

Each trial of a tuning experiment would otherwise retrain them: :func:`cached` memoises a
model in the process and, with a cache folder, on disk as a ``state_dict`` that trial
subprocesses load. The cache keys (:func:`config_key` of the training settings) are stable, so
a disk cache written before stays valid.

Owns the model memo, the helper models' training recipes and :class:`BaseFlowConfig`, the
parameters of a workload that starts from a base flow. May import torch, the algorithm
and support modules of :mod:`assay.generative` (flow matching, data, rewards); nothing of
``assay.service`` or ``assay.storage``.

Example:
    >>> import torch
    >>> net = cached(config_key("doc", 1), lambda: torch.nn.Linear(2, 1))
    >>> net is cached(config_key("doc", 1), lambda: torch.nn.Linear(2, 1))
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from assay.generative.flow_matching import MLPVelocity, UNetVelocity, train_flow_matching
from assay.generative.rewards import DigitsClassifier, train_digits_classifier
from assay.generative.workloads.common import WorkloadConfig

#: Process-wide memo of trained helper models (base flows, classifiers), keyed by config hash.
_MEMO: dict[str, Any] = {}


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


def _trained_flow(
    key: str,
    make_model: Callable[[], nn.Module],
    make_sampler: Callable[[torch.Generator], Callable[[int], Tensor]],
    *,
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device | str,
    cache_dir: str | None,
) -> nn.Module:
    """A flow-matching model trained on ``make_sampler(generator)``'s data, via :func:`cached`."""

    def build() -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        sample_data = make_sampler(g)
        model = make_model()
        train_flow_matching(
            model,
            sample_data,
            iterations=iterations,
            batch_size=batch_size,
            lr=lr,
            device=device,
            generator=g,
        )
        return model

    return cached(key, build, cache_dir=cache_dir, factory=make_model)


def toy_base_model(
    data: str,
    *,
    iterations: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    hidden: int = 128,
    layers: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> MLPVelocity:
    """A flow-matching MLP on the 2-D toy ``data``, trained once per process (memoised)."""
    from assay.generative.data import get_toy

    def make_sampler(g: torch.Generator) -> Callable[[int], Tensor]:
        toy = get_toy(data)
        return lambda n: toy.sample(n, generator=g)

    return _trained_flow(  # type: ignore[return-value]
        config_key("toy_base", data, iterations, batch_size, lr, hidden, layers, seed),
        lambda: MLPVelocity(2, hidden=hidden, layers=layers),
        make_sampler,
        iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, device=device,
        cache_dir=cache_dir,
    )  # fmt: skip


def digits_base_model(
    *,
    iterations: int = 4000,
    batch_size: int = 128,
    lr: float = 2e-3,
    channels: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> UNetVelocity:
    """A flow-matching U-Net on the digits training split, trained once per process."""
    from assay.generative.data import load_digits_tensor

    def make_sampler(g: torch.Generator) -> Callable[[int], Tensor]:
        x, _ = load_digits_tensor("train")
        x = x.to(device)

        def sample(n: int) -> Tensor:
            idx = torch.randint(0, len(x), (n,), generator=g).to(x.device)
            return x[idx]

        return sample

    return _trained_flow(  # type: ignore[return-value]
        config_key("digits_base", iterations, batch_size, lr, channels, seed),
        lambda: UNetVelocity(channels),
        make_sampler,
        iterations=iterations, batch_size=batch_size, lr=lr, seed=seed, device=device,
        cache_dir=cache_dir,
    )  # fmt: skip


def digits_classifier(
    *, seed: int = 0, device: torch.device | str = "cpu", cache_dir: str | None = None
) -> DigitsClassifier:
    """The digits classifier (:func:`~assay.generative.rewards.train_digits_classifier`),
    trained once per process and per disk cache."""
    return cached(  # type: ignore[return-value]
        config_key("digits_classifier", seed),
        lambda: train_digits_classifier(seed=seed, device=device)[0],
        cache_dir=cache_dir,
        factory=DigitsClassifier,
    )


@dataclass
class BaseFlowConfig(WorkloadConfig):
    """The config of a workload that starts from a pretrained base flow (fine-tuning, control).

    Attributes:
        base_iterations: Training steps of the base flow (cached per process and disk).
        base_channels: U-Net width of the digits base flow.
    """

    base_iterations: int = 2000
    base_channels: int = 32

    def base_flow(self, task: str, device: torch.device | str) -> nn.Module:
        """The cached base flow for ``task`` on ``device``: the digits U-Net for ``"digits"``,
        else the MLP on the 2-D toy density named ``task``."""
        cache_dir = self.cache_dir or None
        if task == "digits":
            base = digits_base_model(iterations=self.base_iterations, channels=self.base_channels,
                                     cache_dir=cache_dir, device=device)  # fmt: skip
        else:
            base = toy_base_model(task, iterations=self.base_iterations, cache_dir=cache_dir,
                                  device=device)  # fmt: skip
        return base.to(device)


__all__ = [
    "BaseFlowConfig",
    "cached",
    "config_key",
    "digits_base_model",
    "digits_classifier",
    "toy_base_model",
]
