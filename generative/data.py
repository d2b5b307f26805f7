"""Data that needs no download: 2-D toy densities and scikit-learn's bundled 8×8 digits.

The 2-D toys come with their (log-)densities, so controlled-generation results can be scored
by how far they stay on the data support (D-Flow's claim) and fine-tuned distributions can be
compared with exact targets:

* :class:`EightGaussians` — a mixture of 8 isotropic Gaussians on a circle (exact log-density).
* :class:`Checkerboard` — uniform on the black squares of a 4×4 board on ``[-2, 2]²``.
* :class:`Moons` — two interleaved half circles with Gaussian noise; its log-density is the
  noise kernel convolved with the arcs, computed by quadrature over the arc parameter.

Example:
    >>> toy = get_toy("8gaussians")
    >>> x = toy.sample(1000, generator=torch.Generator().manual_seed(0))
    >>> x.shape, bool(toy.log_prob(x).isfinite().all())
    (torch.Size([1000, 2]), True)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from assay.platform.errors import ValidationError


class ToyDensity:
    """A 2-D distribution with ``sample(n)`` and ``log_prob(x)``."""

    name: str = "toy"
    dim: int = 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n x 2`` samples (CPU, float32)."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (``n x 2``) → ``n``; ``-inf`` off the support."""
        raise NotImplementedError


class EightGaussians(ToyDensity):
    """Equal mixture of 8 Gaussians ``N(r·(cos θ_k, sin θ_k), s²I)``, ``θ_k = kπ/4``.

    Args:
        radius: Circle radius ``r``.
        std: Component standard deviation ``s``.
    """

    name = "8gaussians"

    def __init__(self, radius: float = 2.0, std: float = 0.2) -> None:
        self.radius, self.std = radius, std
        ang = torch.arange(8, dtype=torch.float32) * (math.pi / 4)
        self.centers = radius * torch.stack([ang.cos(), ang.sin()], dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.randint(0, 8, (n,), generator=generator)
        return self.centers[k] + self.std * torch.randn(n, 2, generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        c = self.centers.to(x)
        d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        comp = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(comp, dim=1) - math.log(8.0)

    def component(self, x: Tensor) -> Tensor:
        """Index of the nearest component centre for each row of ``x`` → ``n`` (long)."""
        return torch.cdist(x, self.centers.to(x)).argmin(dim=1)


class Checkerboard(ToyDensity):
    """Uniform on the 8 black unit squares of a 4×4 checkerboard on ``[-2, 2]²``."""

    name = "checkerboard"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x1 = torch.rand(n, generator=generator) * 4 - 2
        x2 = torch.rand(n, generator=generator) - torch.randint(0, 2, (n,), generator=generator) * 2
        x2 = x2 + (torch.floor(x1) % 2)
        return torch.stack([x1, x2], dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        inside = (x.abs() <= 2).all(dim=1)
        black = ((torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2) == 0
        on = inside & black
        return torch.where(on, torch.full_like(x[:, 0], -math.log(8.0)), -math.inf)


class Moons(ToyDensity):
    """Two interleaved half circles (scikit-learn's ``make_moons`` shape) with noise.

    Points are ``2·(arc(θ) − (0.5, 0.25)) + noise·ε``, θ ~ U[0, π], so the data sit roughly in
    ``[-3, 3] × [-1.5, 1.5]``.

    Args:
        noise: Standard deviation of the isotropic Gaussian noise (after scaling).
        quadrature: Number of arc points for the log-density integral.
    """

    name = "moons"

    def __init__(self, noise: float = 0.1, quadrature: int = 512) -> None:
        self.noise = noise
        th = (torch.arange(quadrature, dtype=torch.float32) + 0.5) * (math.pi / quadrature)
        self._arc = torch.cat([self._points(th, 0), self._points(th, 1)], dim=0)

    @staticmethod
    def _points(theta: Tensor, moon: int) -> Tensor:
        if moon == 0:
            p = torch.stack([theta.cos(), theta.sin()], dim=1)
        else:
            p = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
        return 2 * (p - torch.tensor([0.5, 0.25]))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        th = torch.rand(n, generator=generator) * math.pi
        moon = torch.randint(0, 2, (n,), generator=generator)
        p = torch.where(moon[:, None] == 0, self._points(th, 0), self._points(th, 1))
        return p + self.noise * torch.randn(n, 2, generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        arc = self._arc.to(x)
        d2 = torch.cdist(x, arc) ** 2
        comp = -d2 / (2 * self.noise**2) - math.log(2 * math.pi * self.noise**2)
        return torch.logsumexp(comp, dim=1) - math.log(arc.shape[0])


TOYS: dict[str, type[ToyDensity]] = {
    "8gaussians": EightGaussians,
    "checkerboard": Checkerboard,
    "moons": Moons,
}


def get_toy(name: str) -> ToyDensity:
    """The toy density called ``name`` (one of :data:`TOYS`)."""
    if name not in TOYS:
        raise ValidationError(
            f"unknown toy dataset {name!r}; choose from {sorted(TOYS)}", field="data"
        )
    return TOYS[name]()


def load_digits_tensor(split: str = "all", seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 8×8 digits scaled to ``[-1, 1]``.

    Args:
        split: ``"all"``, ``"train"`` (first 80% of a seeded permutation) or ``"test"``.
        seed: Permutation seed of the split.

    Returns:
        Images ``n x 1 x 8 x 8`` (float32) and labels ``n`` (long).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0 * 2 - 1
    y = torch.tensor(d.target, dtype=torch.long)
    if split == "all":
        return x, y
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    idx = perm[:cut] if split == "train" else perm[cut:]
    if split not in ("train", "test"):
        raise ValidationError(f"split must be all/train/test, got {split!r}", field="split")
    return x[idx], y[idx]
