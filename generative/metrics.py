"""Distances between sample sets and image-quality metrics used by the generative jobs.

* :func:`sliced_wasserstein` — sliced 2-Wasserstein distance; either side may carry weights,
  so a fine-tuned model can be compared with the *self-normalised reweighting* of base samples
  (the target of reward fine-tuning, Domingo-Enrich et al. 2025) without resampling noise.
* :func:`mmd_rbf` — (weighted) maximum mean discrepancy with a sum of RBF kernels.
* :func:`frechet_distance` — Fréchet distance between Gaussian fits of two feature sets (FID's
  formula, here in a small digits classifier's feature space).
* :func:`psnr`, :func:`mean_pairwise_distance`.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g) + 1
    >>> sliced_wasserstein(a, a[:1000]) < sliced_wasserstein(a, b)
    tensor(True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _normalise(w: Tensor | None, n: int, like: Tensor) -> Tensor:
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    w = w.to(like).clamp_min(0)
    return w / w.sum()


def _quantiles(proj: Tensor, w: Tensor, levels: Tensor) -> Tensor:
    """Weighted quantile functions of the columns of ``proj`` (``n x P``) at ``levels``."""
    vals, idx = proj.sort(dim=0)
    cw = torch.cumsum(w[idx], dim=0)  # n x P
    cw = cw / cw[-1:]
    pos = torch.searchsorted(cw.T.contiguous(), levels.expand(proj.shape[1], -1).contiguous())
    pos = pos.clamp_max(proj.shape[0] - 1).T  # L x P
    return torch.gather(vals, 0, pos)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    x_weights: Tensor | None = None,
    y_weights: Tensor | None = None,
    n_projections: int = 256,
    n_levels: int = 512,
    seed: int = 0,
) -> Tensor:
    """Sliced 2-Wasserstein distance ``sqrt(E_θ W2²(θᵀX, θᵀY))`` between empirical measures.

    Each 1-D distance is computed from the two (weighted) quantile functions at ``n_levels``
    mid-point levels; directions are uniform on the sphere (fixed ``seed`` for comparability).

    Args:
        x: ``n x d`` samples.
        y: ``m x d`` samples.
        x_weights: Optional ``n`` non-negative weights (normalised internally).
        y_weights: Optional ``m`` non-negative weights.
        n_projections: Number of random directions.
        n_levels: Quantile levels per direction.
        seed: Seed of the directions.

    Returns:
        A scalar tensor.
    """
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.double).to(x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    levels = (torch.arange(n_levels, dtype=torch.double, device=x.device) + 0.5) / n_levels
    qx = _quantiles(x @ theta, _normalise(x_weights, len(x), x), levels)
    qy = _quantiles(y @ theta, _normalise(y_weights, len(y), y), levels)
    return ((qx - qy) ** 2).mean().sqrt().float()


def mmd_rbf(
    x: Tensor,
    y: Tensor,
    *,
    x_weights: Tensor | None = None,
    y_weights: Tensor | None = None,
    bandwidths: tuple[float, ...] | None = None,
    max_points: int = 3000,
    seed: int = 0,
) -> Tensor:
    """(Weighted) squared MMD with a sum of RBF kernels, ``k = Σ_b exp(-‖a-b‖²/(2b²))``.

    Larger sets are subsampled to ``max_points`` (with probability proportional to weight for a
    weighted set, which then becomes uniform) to bound memory.

    Args:
        x: ``n x d`` samples; ``y``: ``m x d`` samples.
        x_weights, y_weights: Optional non-negative weights.
        bandwidths: Kernel bandwidths; default: ``{0.5, 1, 2} ×`` the median pairwise distance.
        max_points: Subsample size cap per side.
        seed: Subsampling seed.
    """
    g = torch.Generator().manual_seed(seed)

    def sub(a: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        a = a.reshape(len(a), -1).double()
        if len(a) > max_points:
            p = _normalise(w, len(a), a).cpu()
            idx = torch.multinomial(p, max_points, replacement=w is not None, generator=g)
            return a[idx.to(a.device)], _normalise(None, max_points, a)
        return a, _normalise(w, len(a), a)

    x, wx = sub(x, x_weights)
    y, wy = sub(y, y_weights)
    if bandwidths is None:
        both = torch.cat([x[:500], y[:500]])
        med = torch.cdist(both, both).median().clamp_min(1e-6).item()
        bandwidths = (0.5 * med, med, 2 * med)

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b) ** 2
        return sum(torch.exp(-d2 / (2 * bw**2)) for bw in bandwidths)

    val = wx @ k(x, x) @ wx + wy @ k(y, y) @ wy - 2 * wx @ k(x, y) @ wy
    return val.clamp_min(0).float()


def frechet_distance(feat_a: Tensor, feat_b: Tensor) -> float:
    """``‖μa−μb‖² + Tr(Σa + Σb − 2(Σa Σb)^{1/2})`` between Gaussian fits of two feature sets."""
    from scipy import linalg

    a = feat_a.detach().double().cpu().numpy()
    b = feat_b.detach().double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb)
    if isinstance(covmean, tuple):  # older SciPy with disp=False semantics
        covmean = covmean[0]
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    val = float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * covmean))
    return max(val, 0.0)


def psnr(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, data_range: float = 2.0
) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(range² / MSE)``.

    Args:
        pred: ``n x ...`` images.
        target: Same shape.
        mask: Optional same-shape (or broadcastable) 0/1 mask: the MSE is taken where it is 1.
        data_range: Value range of the images (2 for ``[-1, 1]``).

    Returns:
        ``n`` PSNRs in dB.
    """
    err = (pred - target) ** 2
    if mask is None:
        mse = err.reshape(len(err), -1).mean(1)
    else:
        m = mask.expand_as(err).reshape(len(err), -1).to(err)
        mse = (err.reshape(len(err), -1) * m).sum(1) / m.sum(1).clamp_min(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def mean_pairwise_distance(x: Tensor, max_points: int = 2000) -> float:
    """Average Euclidean distance between distinct samples (a simple diversity measure)."""
    x = x.reshape(len(x), -1)[:max_points].double()
    n = len(x)
    if n < 2:
        return 0.0
    d = torch.cdist(x, x)
    return float(d.sum() / (n * (n - 1)))


def total_variation(p: Tensor, q: Tensor) -> float:
    """``½ Σ |p − q|`` between two histograms (normalised internally)."""
    p, q = p.double() / p.sum(), q.double() / q.sum()
    return float(0.5 * (p - q).abs().sum())


def entropy(p: Tensor) -> float:
    """Shannon entropy (nats) of a histogram."""
    p = p.double() / p.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


__all__ = [
    "entropy",
    "frechet_distance",
    "mean_pairwise_distance",
    "mmd_rbf",
    "psnr",
    "sliced_wasserstein",
    "total_variation",
]
