"""A marginal-based DP baseline: MST-style tree synthesizer written for Assay.

MST (McKenna, Miklau & Sheldon, "Winning the NIST Contest: A scalable and general approach to
differentially private synthetic data", 2021) spends a ρ-zCDP budget in three equal parts:

1. measure every 1-way marginal with the Gaussian mechanism (L2 sensitivity 1 per histogram
   under add/remove-one, so ``k`` histograms with noise σ₁ cost ``k / (2σ₁²)``);
2. select a maximum spanning tree of column pairs, one edge per round with the exponential
   mechanism (score of pair ``(a, b)``: the L1 distance between its true 2-way marginal and the
   independent model built from the noisy 1-ways, sensitivity 1; ``k − 1`` rounds of ε₀-EM
   cost ``(k − 1) ε₀² / 8``), only among pairs joining two components (Kruskal);
3. measure the selected 2-way marginals with the Gaussian mechanism.

MST then fits a graphical model to the noisy measurements with Private-PGM (the ``mbi``
package) and samples it. Here the estimation step is simpler and dependency-free: the tree is
rooted and sampled ancestrally, the root from its noisy 1-way marginal and each child from
``P(child | parent)`` read off the noisy 2-way table (negatives clipped, plus one pseudo-row
spread by the child's noisy 1-way marginal, mixed with 0.1% uniform so no held-out row has zero
probability). The measurements are globally inconsistent in a way Private-PGM would reconcile,
so this baseline is somewhat weaker than published MST at small ε; it is an honest marginal
baseline, not a reproduction of MST's numbers. All of it is post-processing of the three
private steps, so the release is ρ-zCDP, hence (ε, δ)-DP by :func:`zcdp_to_dp` and
(2, 2ρ)-RDP for the reconstruction bound.

Why not a packaged MST/AIM (checked against PyPI on 2026-12-02): ``smartnoise-synth`` 1.0.8
pins ``opacus>=0.14,<0.15`` and ``mbi<2``, which cannot be installed beside the Opacus 1.5+ the
DP-SGD model needs; ``mbi`` 2.0.0 ships only Private-PGM's estimation engine (no MST or AIM
mechanism) and pulls in JAX. Writing the three private steps here, on our own accounting, is
smaller than either.

With ``epsilon = inf`` the same tree model uses exact marginals and the maximum-score tree
(a Chow–Liu-like non-private reference).

Example:
    >>> mst = MSTSynthesizer(epsilon=3.0, delta=1e-6).fit(codes, codec.sizes)  # doctest: +SKIP
    >>> synth_codes = mst.sample(1000, seed=0)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from assay.generative.privacy import zcdp_rho_for, zcdp_to_dp
from assay.platform.errors import ValidationError

_UNIFORM_MIX = 1e-3


def _hist2(codes: np.ndarray, a: int, b: int, sizes: Sequence[int]) -> np.ndarray:
    idx = codes[:, a] * sizes[b] + codes[:, b]
    return np.bincount(idx, minlength=sizes[a] * sizes[b]).reshape(sizes[a], sizes[b]).astype(float)


def _normalise(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(p, 0.0, None)
    s = p.sum(axis=axis, keepdims=True)
    size = p.shape[axis]
    p = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / size)
    return (1 - _UNIFORM_MIX) * p + _UNIFORM_MIX / size


class MSTSynthesizer:
    """ρ-zCDP tree synthesizer over discretised columns (see the module docstring).

    Args:
        epsilon: Target ε (``math.inf``: no noise).
        delta: Target δ.
        seed: Seed of the mechanism's noise and selection.
    """

    def __init__(self, epsilon: float, delta: float = 1e-6, seed: int = 0) -> None:
        if not epsilon > 0:
            raise ValidationError(f"epsilon must be > 0, got {epsilon!r}", field="epsilon")
        self.epsilon, self.delta, self.seed = float(epsilon), float(delta), seed
        self.rho = math.inf if math.isinf(epsilon) else zcdp_rho_for(epsilon, delta)
        self.edges: list[tuple[int, int]] = []

    @property
    def private(self) -> bool:
        return math.isfinite(self.rho)

    def privacy(self) -> dict[str, Any]:
        """ρ, the (ε, δ) it implies, and the order-2 RDP ε (``2ρ``)."""
        return {
            "mechanism": "mst_tree_zcdp",
            "rho": self.rho,
            "delta": self.delta,
            "epsilon": zcdp_to_dp(self.rho, self.delta) if self.private else math.inf,
            "epsilon_rdp2": 2 * self.rho,
        }

    def fit(self, codes: np.ndarray, sizes: Sequence[int]) -> MSTSynthesizer:
        """Measure and select on ``codes`` (``n x k`` local codes, ``sizes[j]`` per column)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(sizes) or codes.shape[0] == 0:
            raise ValidationError("codes must be a non-empty n x len(sizes) array", field="codes")
        rng = np.random.default_rng(self.seed)
        k = len(sizes)
        self.sizes = list(sizes)
        parts = 3 if k > 1 else 1
        rho_part = self.rho / parts

        def gauss(x: np.ndarray, n_meas: int) -> np.ndarray:
            if not self.private:
                return x
            sigma = math.sqrt(n_meas / (2 * rho_part))
            return x + rng.normal(0.0, sigma, x.shape)

        ones = [np.bincount(codes[:, j], minlength=s).astype(float) for j, s in enumerate(sizes)]
        self.one_way = [gauss(h, k) for h in ones]
        self.edges = self._select(codes, rng, rho_part) if k > 1 else []
        self.two_way = {e: gauss(_hist2(codes, *e, sizes), len(self.edges)) for e in self.edges}
        self._build_tree()
        return self

    def _select(
        self, codes: np.ndarray, rng: np.random.Generator, rho_part: float
    ) -> list[tuple[int, int]]:
        k, sizes = len(self.sizes), self.sizes
        p1 = [_normalise(h) for h in self.one_way]
        total = max(float(np.mean([max(h.sum(), 1.0) for h in self.one_way])), 1.0)
        score = {}
        for a in range(k):
            for b in range(a + 1, k):
                indep = total * np.outer(p1[a], p1[b])
                score[(a, b)] = float(np.abs(_hist2(codes, a, b, sizes) - indep).sum())
        rounds = k - 1
        eps0 = math.sqrt(8 * rho_part / rounds) if self.private else math.inf
        comp = list(range(k))

        def find(i: int) -> int:
            while comp[i] != i:
                comp[i] = comp[comp[i]]
                i = comp[i]
            return i

        chosen = []
        for _ in range(rounds):
            cands = [e for e in score if find(e[0]) != find(e[1])]
            s = np.array([score[e] for e in cands])
            if math.isinf(eps0):
                pick = int(np.argmax(s))
            else:  # exponential mechanism, sensitivity 1
                logits = eps0 / 2 * (s - s.max())
                p = np.exp(logits)
                pick = int(rng.choice(len(cands), p=p / p.sum()))
            a, b = cands[pick]
            comp[find(a)] = find(b)
            chosen.append((a, b))
        return chosen

    def _build_tree(self) -> None:
        k = len(self.sizes)
        adj: dict[int, list[int]] = {j: [] for j in range(k)}
        for a, b in self.edges:
            adj[a].append(b)
            adj[b].append(a)
        self.order, self.parent = [], {}
        seen = set()
        for root in range(k):  # a forest only if k == 1; kept general
            if root in seen:
                continue
            seen.add(root)
            queue = deque([root])
            while queue:
                u = queue.popleft()
                self.order.append(u)
                for v in adj[u]:
                    if v not in seen:
                        seen.add(v)
                        self.parent[v] = u
                        queue.append(v)
        self.marg = [_normalise(h) for h in self.one_way]
        self.cond: dict[int, np.ndarray] = {}
        for child, par in self.parent.items():
            key = (par, child) if (par, child) in self.two_way else (child, par)
            t = self.two_way[key] if key[0] == par else self.two_way[key].T  # par x child
            t = np.clip(t, 0.0, None) + self.marg[child][None, :]  # one pseudo-row
            self.cond[child] = _normalise(t, axis=1)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n x k`` synthetic codes (post-processing: no extra privacy cost)."""
        rng = np.random.default_rng(seed)
        out = np.zeros((n, len(self.sizes)), dtype=np.int64)
        for j in self.order:
            if j not in self.parent:
                out[:, j] = rng.choice(self.sizes[j], size=n, p=self.marg[j])
            else:
                probs = self.cond[j][out[:, self.parent[j]]]  # n x size_j
                u = rng.random((n, 1))
                out[:, j] = np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), self.sizes[j] - 1)
        return out

    def nll(self, codes: np.ndarray) -> float:
        """Mean negative log-likelihood (nats per row) of ``codes`` under the tree model."""
        codes = np.asarray(codes, dtype=np.int64)
        ll = np.zeros(codes.shape[0])
        for j in self.order:
            if j not in self.parent:
                ll += np.log(self.marg[j][codes[:, j]])
            else:
                ll += np.log(self.cond[j][codes[:, self.parent[j]], codes[:, j]])
        return float(-ll.mean())
