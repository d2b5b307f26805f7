"""DP-SGD training of the tabular language model through Opacus, and ε = ∞ for comparison.

DP-SGD (Abadi et al. 2016) as Opacus implements it: each step draws a Poisson sample of the
training rows (every row joins independently with probability ``q = batch_size / n``),
computes every row's gradient, clips it to L2 norm ``C`` (``max_grad_norm``), sums, adds
Gaussian noise ``N(0, σ² C² I)`` and divides by the expected batch size ``q n``. The noise
multiplier ``σ`` is the smallest one for which the chosen accountant (PRV by default, Gopi et
al. 2021; or RDP, Mironov 2017) certifies the target ``(ε, δ)`` after ``T = epochs / q`` steps
(``opacus.accountants.utils.get_noise_multiplier``). After training the spent ε is reported by
*both* accountants, plus the order-2 RDP ε₂ used by the reconstruction bound.

With ``epsilon = inf`` the same model is trained with the ordinary (non-private) optimizer on
shuffled minibatches of the same size, for comparison.

Privacy unit: one row. If a person contributes several rows, group them first (or divide ε
by the largest contribution; group privacy).

Example:
    >>> cfg = TrainConfig(epsilon=3.0, delta=1e-6, epochs=5)            # doctest: +SKIP
    >>> fitted = fit_tabular_lm(codec, codec.encode(train_rows), cfg)
    >>> rows = fitted.sample(1000, seed=0)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from assay.generative.tabular.model import TabularGPT, heldout_nll, row_nll, sample_tokens
from assay.generative.tabular.schema import RowCodec
from assay.platform.errors import ValidationError


@dataclass
class TrainConfig:
    """Hyperparameters of one DP-SGD run (the ones an Assay experiment tunes are marked *).

    Args:
        epsilon: Target ε (``math.inf`` trains without privacy).
        delta: Target δ (use ``<< 1/n``).
        max_grad_norm: * Per-sample clipping norm ``C``.
        batch_size: * Expected (Poisson) batch size; ``q = batch_size / n``.
        epochs: * Passes over the data; ``T = round(epochs / q)`` steps.
        lr: * Learning rate.
        d_model: * Model width.
        n_layers: Transformer blocks.
        n_heads: Attention heads.
        optimizer: ``"adam"`` or ``"sgd"``.
        accountant: ``"prv"`` or ``"rdp"``: the one that picks σ.
        noise_multiplier: Fix σ instead of deriving it from ``epsilon`` (tests, audits).
        seed: Seed of the model init, the sampling and the noise.
    """

    epsilon: float = 3.0
    delta: float = 1e-6
    max_grad_norm: float = 1.0
    batch_size: int = 256
    epochs: float = 5.0
    lr: float = 3e-3
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    optimizer: str = "adam"
    accountant: str = "prv"
    noise_multiplier: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool]] = [
            ("epsilon", self.epsilon > 0),
            ("delta", 0 < self.delta < 1),
            ("max_grad_norm", self.max_grad_norm > 0),
            ("batch_size", self.batch_size >= 1),
            ("epochs", self.epochs > 0),
            ("lr", self.lr > 0),
            ("d_model", self.d_model >= 1 and self.d_model % self.n_heads == 0),
            ("optimizer", self.optimizer in ("adam", "sgd")),
            ("accountant", self.accountant in ("prv", "rdp")),
            ("noise_multiplier", self.noise_multiplier is None or self.noise_multiplier >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise ValidationError(
                    f"train config: invalid {name}={getattr(self, name)!r}", field=name
                )

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon) or self.noise_multiplier is not None


@dataclass
class PrivacySpend:
    """What a DP-SGD run spent: its mechanism parameters and ε under both accountants.

    Args:
        noise_multiplier: σ (noise std / clipping norm).
        sample_rate: Poisson sampling rate ``q``.
        steps: Number of noisy steps ``T``.
        max_grad_norm: Clipping norm ``C``.
        delta: δ for the ε values.
        epsilon_prv: ε(δ) from Opacus's PRV accountant.
        epsilon_rdp: ε(δ) from Opacus's RDP accountant.
        epsilon_rdp2: RDP ε at order α = 2 (for the reconstruction bound).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    delta: float
    epsilon_prv: float
    epsilon_rdp: float
    epsilon_rdp2: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class FittedLM:
    """A trained tabular LM with its codec, privacy spend and training log."""

    model: nn.Module
    codec: RowCodec
    config: TrainConfig
    privacy: PrivacySpend | None
    train_seconds: float
    epoch_losses: list[float] = field(default_factory=list)

    def sample_tokens(self, n: int, seed: int = 0) -> Tensor:
        """``n x seq_len`` valid token rows (post-processing: costs no privacy)."""
        return sample_tokens(
            self.model, self.codec, n, generator=torch.Generator().manual_seed(seed)
        )

    def sample(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """``n`` synthetic rows (numeric values drawn uniformly inside their bin)."""
        return self.codec.decode(self.sample_tokens(n, seed), np.random.default_rng(seed))

    def nll(self, tokens: Tensor) -> float:
        """Held-out NLL per row in nats."""
        return heldout_nll(self.model, self.codec, tokens)


def _noise_multiplier(cfg: TrainConfig, sample_rate: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    if cfg.noise_multiplier is not None:
        return float(cfg.noise_multiplier)
    return float(
        get_noise_multiplier(
            target_epsilon=cfg.epsilon,
            target_delta=cfg.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=cfg.accountant,
            epsilon_tolerance=0.005,
        )
    )


class TabularLMTrainer:
    """Builds the model, the (private) optimizer and the (Poisson) data loader for one run.

    For a private run the model is wrapped in Opacus's ``GradSampleModule``, the optimizer in
    a ``DPOptimizer`` (per-sample clipping + Gaussian noise) and the loader in a
    ``DPDataLoader`` (Poisson sampling); the ``PrivacyEngine``'s accountant tracks every step.

    Args:
        codec: Row codec of the schema.
        train_tokens: ``n x seq_len`` training rows.
        config: Hyperparameters.
    """

    def __init__(self, codec: RowCodec, train_tokens: Tensor, config: TrainConfig) -> None:
        n = int(train_tokens.shape[0])
        if n < 2:
            raise ValidationError("need at least 2 training rows", field="train_tokens")
        self.codec, self.config, self.n = codec, config, n
        torch.manual_seed(config.seed)
        self.sample_rate = min(1.0, config.batch_size / n)
        self.steps = max(1, round(config.epochs / self.sample_rate))
        model = TabularGPT(
            codec.vocab_size, codec.seq_len, config.d_model, config.n_layers, config.n_heads
        )
        opt_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
        optimizer = opt_cls(model.parameters(), lr=config.lr)
        gen = torch.Generator().manual_seed(config.seed)
        loader = DataLoader(
            TensorDataset(train_tokens), batch_size=config.batch_size, shuffle=True, generator=gen
        )
        self.engine = None
        self.noise_multiplier = 0.0
        if config.private:
            from opacus import PrivacyEngine

            with warnings.catch_warnings():
                # secure-RNG notice; PRV's internal RDP domain bound ("optimal order is the
                # largest alpha"), which does not affect the PRV epsilon
                warnings.simplefilter("ignore")
                self.noise_multiplier = _noise_multiplier(config, self.sample_rate, self.steps)
                self.engine = PrivacyEngine(accountant=config.accountant)
                model, optimizer, loader = self.engine.make_private(
                    module=model,
                    optimizer=optimizer,
                    data_loader=loader,
                    noise_multiplier=self.noise_multiplier,
                    max_grad_norm=config.max_grad_norm,
                    poisson_sampling=True,
                )
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.steps_done = 0

    def train_step(self, batch: Tensor) -> float:
        """One optimizer step on ``batch`` (``b x seq_len``); returns the mean row NLL."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # Opacus' backward hooks on the first layer: "no inputs require gradients"
            warnings.simplefilter("ignore", UserWarning)
            nll = row_nll(self.model, self.codec, batch)
            # An empty Poisson draw still takes a step: the DP optimizer then adds pure noise,
            # as the accountant assumes (skipping it would reveal the empty draw).
            loss = nll.mean() if batch.shape[0] > 0 else nll.sum()
            loss.backward()
        self.optimizer.step()
        loss_value = float(loss.detach()) if batch.shape[0] > 0 else float("nan")
        self.steps_done += 1
        return loss_value

    def batches(self):
        """Batches until ``steps`` steps are done (several passes over the loader)."""
        while True:
            for (batch,) in self.loader:
                if self.steps_done >= self.steps:
                    return
                yield batch

    def spend(self) -> PrivacySpend | None:
        """ε spent so far by PRV and RDP (``None`` for a non-private run)."""
        if self.engine is None:
            return None
        from assay.generative.privacy import dpsgd_epsilons

        eps = dpsgd_epsilons(
            self.noise_multiplier, self.sample_rate, max(self.steps_done, 1), self.config.delta
        )
        return PrivacySpend(
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps_done,
            max_grad_norm=self.config.max_grad_norm,
            delta=self.config.delta,
            epsilon_prv=eps.epsilon_prv,
            epsilon_rdp=eps.epsilon_rdp,
            epsilon_rdp2=eps.rdp_order2,
        )

    def fit(self, on_epoch: Callable[[int, float], None] | None = None) -> FittedLM:
        """Run all ``steps``; ``on_epoch(epoch, mean_loss)`` after each ~1/q steps."""
        t0 = time.perf_counter()
        per_epoch = max(1, round(1 / self.sample_rate))
        losses: list[float] = []
        running: list[float] = []
        for batch in self.batches():
            v = self.train_step(batch)
            if not math.isnan(v):
                running.append(v)
            if self.steps_done % per_epoch == 0 or self.steps_done == self.steps:
                mean = float(np.mean(running)) if running else float("nan")
                losses.append(mean)
                running = []
                if on_epoch is not None:
                    on_epoch(len(losses), mean)
        seconds = time.perf_counter() - t0
        model = getattr(self.model, "_module", self.model)  # unwrap GradSampleModule
        return FittedLM(model, self.codec, self.config, self.spend(), seconds, losses)


def fit_tabular_lm(
    codec: RowCodec,
    train_tokens: Tensor,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FittedLM:
    """Train a :class:`TabularGPT` on ``train_tokens`` with DP-SGD (or without, at ε = ∞).

    Args:
        codec: Row codec of the schema.
        train_tokens: ``n x seq_len`` token rows (from ``codec.encode``).
        config: Hyperparameters and privacy target.
        on_epoch: Progress callback ``(epoch, mean_train_nll)``.

    Returns:
        The fitted model with its :class:`PrivacySpend` (``None`` when ε = ∞).
    """
    return TabularLMTrainer(codec, train_tokens, config).fit(on_epoch)
