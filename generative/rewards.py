"""Reward plug-ins for reward fine-tuning, and the small digits classifier behind two of them.

A reward is any differentiable callable ``r(x) -> n`` on a batch ``x`` (``n x ...``); Adjoint
Matching needs ``∇r`` at the generated samples, so rewards must be written in torch.

* :class:`LinearReward` — ``r(x) = ⟨a, x⟩`` (tilts a 2-D density along ``a``).
* :class:`RegionReward` — a smooth indicator of a disc, ``r(x) = exp(−‖x − c‖² / (2 s²))``.
* :class:`ClassifierLogProb` — ``r(x) = log p(y = target | x)`` under a classifier; with
  ``λ = 1`` the tilted distribution ``p_base(x)·p(target | x)`` is the class-conditional.

Example:
    >>> r = LinearReward([1.0, 0.0])
    >>> r(torch.tensor([[2.0, 5.0]]))
    tensor([2.])
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from assay.generative.legacy import forward
from assay.platform.errors import ValidationError


class LinearReward(nn.Module):
    """``r(x) = ⟨a, x⟩``.

    Args:
        direction: The vector ``a`` (length ``d``).
    """

    def __init__(self, direction: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(list(direction), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1) @ self.a.to(x)


class RegionReward(nn.Module):
    """Smooth indicator of a disc: ``r(x) = exp(−‖x − c‖² / (2 s²))`` ∈ (0, 1].

    Args:
        center: The centre ``c``.
        scale: The radius scale ``s``.
    """

    def __init__(self, center: Sequence[float], scale: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValidationError("RegionReward: scale must be > 0", field="scale")
        self.register_buffer("c", torch.tensor(list(center), dtype=torch.float32))
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        d2 = ((x.reshape(len(x), -1) - self.c.to(x)) ** 2).sum(1)
        return torch.exp(-d2 / (2 * self.scale**2))


class DigitsClassifier(nn.Module):
    """A small CNN for ``1 x 8 x 8`` digits in ``[-1, 1]``; ``features`` is its 64-d penultimate
    layer (the feature space of the Fréchet distance reported by the digits jobs)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 64),
            nn.SiLU(),
        )
        self.head = nn.Linear(64, 10)

    def features(self, x: Tensor) -> Tensor:
        """``n x 1 x 8 x 8`` → ``n x 64``."""
        return self.body(x.reshape(-1, 1, 8, 8))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``n x 10``."""
        return self.head(self.features(x))


def train_digits_classifier(
    *,
    iterations: int = 800,
    batch_size: int = 128,
    lr: float = 2e-3,
    noise: float = 0.15,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_seconds: float = 0.0,
) -> tuple[DigitsClassifier, float]:
    """Train :class:`DigitsClassifier` on the digits train split.

    Inputs get Gaussian noise of std ``noise`` during training so the classifier's gradients
    are informative slightly off the data manifold (where fine-tuning trajectories end).
    Training stops early after ``max_seconds`` of wall time when that is positive.

    Returns:
        The classifier (eval mode, on CPU) and its test-split accuracy.
    """
    from assay.generative.data import load_digits_tensor

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = load_digits_tensor("train")
    xt, yt = load_digits_tensor("test")
    model = DigitsClassifier().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t_end = time.perf_counter() + max_seconds if max_seconds > 0 else None
    for _ in range(iterations):
        if t_end is not None and time.perf_counter() > t_end:
            break
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        xb = x[idx] + noise * torch.randn(batch_size, 1, 8, 8, generator=g)
        loss = nn.functional.cross_entropy(model(xb.to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().cpu()
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return model, acc


class ClassifierLogProb(nn.Module):
    """``r(x) = log softmax(f(x))[target]`` for a frozen classifier ``f``.

    Args:
        classifier: Module mapping ``n x ...`` to ``n x C`` logits.
        target: The class whose log-probability is the reward.
    """

    def __init__(self, classifier: nn.Module, target: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.target = int(target)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.classifier(x), dim=1)[:, self.target]


__all__ = [
    "ClassifierLogProb",
    "DigitsClassifier",
    "LinearReward",
    "RegionReward",
    "train_digits_classifier",
]

#: ``digits_classifier`` (the cached classifier) moved to the workloads' pretrained models.
__getattr__ = forward(__name__, pretrained=("digits_classifier",))
