"""Toy densities are normalised and match their samplers; the distances behave as distances."""

from __future__ import annotations

import math

import pytest
import torch

from assay.generative.data import TOYS, get_toy, load_digits_tensor
from assay.generative.metrics import (
    frechet_distance,
    mean_pairwise_distance,
    mmd_rbf,
    psnr,
    sliced_wasserstein,
)


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toy_log_density_integrates_to_one_and_covers_samples(name: str) -> None:
    toy = get_toy(name)
    h = 0.04
    lin = -4 + (torch.arange(200) + 0.5) * h  # cell midpoints (none on a checkerboard edge)
    xx, yy = torch.meshgrid(lin, lin, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = float(toy.log_prob(grid).exp().sum() * h**2)
    assert mass == pytest.approx(1.0, abs=0.02)
    x = toy.sample(2000, generator=torch.Generator().manual_seed(0))
    assert bool(toy.log_prob(x).isfinite().all())


def test_digits_scaled_and_split() -> None:
    x, y = load_digits_tensor()
    assert sorted(y.unique().tolist()) == list(range(10))
    assert x.shape == (1797, 1, 8, 8) and float(x.min()) == -1.0 and float(x.max()) == 1.0
    tr, _ = load_digits_tensor("train")
    te, _ = load_digits_tensor("test")
    assert len(tr) + len(te) == 1797


def test_sliced_wasserstein_of_a_shift_and_weights() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 2, generator=g)
    shift = torch.tensor([3.0, 0.0])
    # W2 of a translation is its length; sliced: length × sqrt(E cos²θ) = 3/sqrt(2).
    assert float(sliced_wasserstein(a, a + shift)) == pytest.approx(3 / math.sqrt(2), rel=0.05)
    # Weights that select one half of a mixture equal that half.
    mix = torch.cat([a[:2000], a[2000:] + shift])
    w = torch.cat([torch.ones(2000), torch.zeros(2000)])
    b = torch.randn(1000, 2, generator=g)
    assert float(sliced_wasserstein(b, mix, y_weights=w)) < 0.12
    assert float(sliced_wasserstein(b, mix)) > 1.0
    assert float(mmd_rbf(b, mix, y_weights=w, max_points=1000)) < 0.2 * float(
        mmd_rbf(b, mix, max_points=1000)
    )


def test_psnr_frechet_and_diversity() -> None:
    x = torch.zeros(2, 1, 8, 8)
    y = x.clone()
    y[:, :, 4:] = 0.2
    mask = torch.zeros(1, 1, 8, 8)
    mask[:, :, 4:] = 1
    assert float(psnr(y, x, mask)[0]) == pytest.approx(10 * math.log10(4 / 0.04))
    f = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(f, f + 1.0) == pytest.approx(4.0, rel=1e-3)
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_cached_fills_the_disk_cache_even_on_a_memo_hit(tmp_path) -> None:
    """A model first built without a disk cache (memo only) is still written when a later
    call names one: trial subprocesses of a tuning run load it from there."""
    from assay.generative.workloads.pretrained import cached, config_key

    key = config_key("test_cached_linear", 3)
    builds = []

    def build() -> torch.nn.Module:
        builds.append(1)
        return torch.nn.Linear(3, 2)

    first = cached(key, build, factory=lambda: torch.nn.Linear(3, 2))
    again = cached(key, build, cache_dir=str(tmp_path), factory=lambda: torch.nn.Linear(3, 2))
    assert again is first and len(builds) == 1
    saved = torch.load(tmp_path / f"{key}.pt", weights_only=True)
    assert torch.equal(saved["weight"], first.weight)
