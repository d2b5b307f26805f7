"""DP-SGD really clips and noises per sample; ε is met; utility falls as ε shrinks; every
sampled row satisfies the schema."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from assay.generative.tabular.data import ab_logs, split_rows
from assay.generative.tabular.model import TabularGPT, row_nll, sample_tokens
from assay.generative.tabular.schema import RowCodec, TableSchema
from assay.generative.tabular.train import TabularLMTrainer, TrainConfig, fit_tabular_lm

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2}


@pytest.fixture(scope="module")
def ab():
    schema, table = ab_logs(1500, seed=11)
    codec = RowCodec(schema)
    return schema, codec, codec.to_codes(table)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _per_sample_grads(model: torch.nn.Module, codec: RowCodec, batch: torch.Tensor):
    grads = []
    for i in range(batch.shape[0]):
        model.zero_grad()
        row_nll(model, codec, batch[i : i + 1]).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(grads)


def _one_step(codec, codes, *, sigma, clip, lr=1.0):
    """One SGD step of the trainer on a fixed batch; returns (update, per-sample grads)."""
    cfg = TrainConfig(
        noise_multiplier=sigma, max_grad_norm=clip, optimizer="sgd", lr=lr, batch_size=16,
        epochs=1, seed=0, **TINY,
    )  # fmt: skip
    trainer = TabularLMTrainer(codec, codec.codes_to_tokens(codes[:64]), cfg)
    module = getattr(trainer.model, "_module", trainer.model)
    torch.manual_seed(0)  # the trainer seeds its model init the same way
    reference = TabularGPT(codec.vocab_size, codec.seq_len, **TINY)
    assert torch.equal(_flat_params(reference), _flat_params(module))
    batch = codec.codes_to_tokens(codes[100:108])
    before = _flat_params(module)
    trainer.train_step(batch)
    return _flat_params(module) - before, _per_sample_grads(reference, codec, batch)


def test_dp_step_is_the_sum_of_per_sample_clipped_gradients(ab):
    _, codec, codes = ab
    clip = 1e-3
    lr = 1e3  # large steps, so float32 rounding of the parameters does not blur the update
    update, g = _one_step(codec, codes, sigma=0.0, clip=clip, lr=lr)
    norms = g.norm(dim=1)
    assert (norms > 100 * clip).all()  # clipping binds for every row
    clipped = g * (clip / norms).clamp(max=1.0).unsqueeze(1)
    expected = -lr * clipped.sum(0) / 16  # divided by the *expected* Poisson batch size
    assert (update - expected).norm() <= 1e-4 * expected.norm()
    # an ordinary optimizer would have stepped along the unclipped mean gradient
    assert (update + lr * g.mean(0)).norm() > 10 * expected.norm()


def test_dp_step_adds_gaussian_noise_of_std_sigma_times_clip(ab):
    _, codec, codes = ab
    sigma, clip = 2.0, 0.5
    update, g = _one_step(codec, codes, sigma=sigma, clip=clip)
    clipped = g * (clip / g.norm(dim=1)).clamp(max=1.0).unsqueeze(1)
    noise = -16 * update - clipped.sum(0)  # what the optimizer added to the clipped sum
    assert noise.numel() > 3000
    assert float(noise.std()) == pytest.approx(sigma * clip, rel=0.06)
    assert abs(float(noise.mean())) < 4 * sigma * clip / math.sqrt(noise.numel())


def test_private_run_meets_target_epsilon_with_poisson_batches(ab):
    _, codec, codes = ab
    cfg = TrainConfig(epsilon=2.0, delta=1e-5, batch_size=100, epochs=2, **TINY)
    trainer = TabularLMTrainer(codec, codec.codes_to_tokens(codes[:1000]), cfg)
    sizes = [int(b.shape[0]) for b in trainer.batches() if trainer.train_step(b) or True]
    assert len(sizes) == trainer.steps == 20
    assert len(set(sizes)) > 3  # Poisson sampling: batch sizes vary around q n = 100
    assert 60 < np.mean(sizes) < 140
    spend = trainer.spend()
    assert spend.sample_rate == pytest.approx(0.1)
    assert 1.9 <= spend.epsilon_prv <= 2.0 + 1e-6  # sigma chosen for the target
    assert spend.epsilon_rdp > spend.epsilon_prv
    assert spend.noise_multiplier > 0


@pytest.mark.slow
def test_utility_degrades_monotonically_as_epsilon_shrinks(ab):
    _, codec, codes = ab
    train, test = split_rows(codes.shape[0], 0.2, 0)
    train_tok, test_tok = codec.codes_to_tokens(codes[train]), codec.codes_to_tokens(codes[test])
    mean_nll = {}
    for eps in (0.3, 1.5, 8.0, math.inf):
        nlls = []
        for seed in (0, 1):
            cfg = TrainConfig(
                epsilon=eps, delta=1e-5, epochs=8, batch_size=150, lr=2e-2, seed=seed, **TINY
            )
            nlls.append(fit_tabular_lm(codec, train_tok, cfg).nll(test_tok))
        mean_nll[eps] = float(np.mean(nlls))
    ordered = [mean_nll[e] for e in (0.3, 1.5, 8.0, math.inf)]
    assert all(a > b + 0.1 for a, b in itertools.pairwise(ordered)), mean_nll


def _assert_schema_valid(schema: TableSchema, rows: list[dict]) -> None:
    for row in rows:
        assert list(row) == schema.names
        for col in schema.columns:
            v = row[col.name]
            if col.kind == "categorical":
                assert v in col.labels
            else:
                assert col.lower <= v <= col.upper
                if col.integer:
                    assert isinstance(v, int)


def test_constrained_sampling_only_yields_schema_valid_rows(ab):
    schema, codec, _ = ab
    torch.manual_seed(0)
    model = TabularGPT(codec.vocab_size, codec.seq_len, **TINY)
    with torch.no_grad():  # push all mass onto tokens that are never valid at value positions
        model.head.bias.zero_()
        model.head.bias[: codec.offsets[0]] = 50.0
    gen = torch.Generator().manual_seed(0)
    tokens = sample_tokens(model, codec, 300, temperature=3.0, generator=gen)
    assert torch.equal(tokens[:, 0], torch.full((300,), 1))
    rows = codec.decode(tokens, np.random.default_rng(0))
    _assert_schema_valid(schema, rows)
    # and all tokens of every column stay reachable
    codes = codec.tokens_to_codes(tokens)
    assert all(len(np.unique(codes[:, j])) > 1 for j in range(codec.n_columns))


def test_fitted_model_samples_valid_rows(ab):
    schema, codec, codes = ab
    cfg = TrainConfig(epsilon=4.0, delta=1e-5, epochs=1, batch_size=200, **TINY)
    fitted = fit_tabular_lm(codec, codec.codes_to_tokens(codes[:600]), cfg)
    _assert_schema_valid(schema, fitted.sample(200, seed=1))
    assert fitted.privacy is not None and fitted.privacy.epsilon_prv <= 4.0 + 1e-6
