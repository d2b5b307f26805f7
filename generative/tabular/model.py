"""A small GPT-style decoder for token rows, built only from layers Opacus can clip per sample.

The architecture is the usual pre-norm decoder (Radford et al. 2019): token + learned position
embeddings, ``n_layers`` blocks of causal multi-head self-attention and a GELU MLP, a final
LayerNorm and a linear head. Attention is written with ``nn.Linear`` projections (not
``nn.MultiheadAttention``) so every parameter lives in an ``nn.Linear``, ``nn.Embedding`` or
``nn.LayerNorm``: the layers whose per-sample gradients Opacus computes exactly with hooks.

Training and evaluation use the *constrained* likelihood of a row: at the value position of
column ``j`` the softmax runs only over column ``j``'s tokens (``RowCodec.allowed``), and the
deterministic BOS/field/EOS tokens carry no loss. The negative log-likelihood of a row is then
exactly ``-log p(row)`` under the model's distribution over the schema's discretised rows, so
held-out NLLs of different models (and of the marginal baseline) are comparable.

Example:
    >>> codec = RowCodec(schema)                                  # doctest: +SKIP
    >>> model = TabularGPT(codec.vocab_size, codec.seq_len, d_model=64)
    >>> tokens = sample_tokens(model, codec, 100, generator=torch.Generator().manual_seed(0))
    >>> rows = codec.decode(tokens)                               # always schema-valid
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from assay.generative.tabular.schema import BOS, RowCodec


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from plain linear layers.

    Args:
        d_model: Width ``D``.
        n_heads: Number of heads (must divide ``D``).
        max_len: Longest sequence (size of the causal mask buffer).
    """

    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)
        mask = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``b x T x D`` -> ``b x T x D``."""
        b, t, d = x.shape
        h = self.n_heads

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, max_len)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TabularGPT(nn.Module):
    """A decoder-only transformer over the token rows of a :class:`RowCodec`.

    Args:
        vocab_size: ``V``, from ``codec.vocab_size``.
        max_len: Longest input (``codec.seq_len``).
        d_model: Width.
        n_layers: Number of blocks.
        n_heads: Attention heads.
    """

    def __init__(
        self, vocab_size: int, max_len: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, max_len) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        """``b x T`` LongTensor -> ``b x T x V`` next-token logits."""
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device).unsqueeze(0).expand_as(tokens)
        x = self.tok(tokens) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def row_nll(model: nn.Module, codec: RowCodec, tokens: Tensor) -> Tensor:
    """Constrained negative log-likelihood of each row, in nats.

    ``-log p(row) = -sum_j log softmax_{v in column j}(logits)[value_j]``: the model predicts
    the token at each value position from the prefix, with its softmax restricted to the
    column's own token range.

    Args:
        model: A :class:`TabularGPT` (or its Opacus wrapper).
        codec: The codec the tokens came from.
        tokens: ``b x seq_len`` valid token rows.

    Returns:
        A ``b``-dim tensor of per-row NLLs (nats).
    """
    logits = model(tokens[:, :-1])  # predicts positions 1 .. seq_len-1
    pos = torch.tensor(codec.value_positions, device=tokens.device)
    allowed = codec.allowed.to(tokens.device)[pos]  # k x V
    lg = logits[:, pos - 1, :].masked_fill(~allowed, float("-inf"))
    logp = lg.log_softmax(dim=-1)
    target = tokens[:, pos]
    return -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(dim=-1)


@torch.no_grad()
def heldout_nll(model: nn.Module, codec: RowCodec, tokens: Tensor, batch_size: int = 2048) -> float:
    """Mean constrained NLL per row (nats) over ``tokens`` (``n x seq_len``)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, tokens.shape[0], batch_size):
        total += float(row_nll(model, codec, tokens[i : i + batch_size]).sum())
    model.train(was_training)
    return total / max(tokens.shape[0], 1)


@torch.no_grad()
def sample_tokens(
    model: nn.Module,
    codec: RowCodec,
    n: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
) -> Tensor:
    """Draw ``n`` rows by constrained ancestral sampling.

    At every position only the tokens ``codec.allowed[t]`` permits can be drawn (field tokens
    and EOS are forced, value tokens are restricted to the current column's range), so every
    sample decodes to a schema-valid row.

    Args:
        model: A trained :class:`TabularGPT`.
        codec: Its codec.
        n: Number of rows.
        temperature: Softmax temperature (1 = the model's distribution).
        generator: Torch RNG for reproducible draws.
        batch_size: Rows per forward pass.

    Returns:
        ``n x seq_len`` LongTensor of valid token rows.
    """
    was_training = model.training
    model.eval()
    allowed = codec.allowed
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        seq = torch.full((b, 1), BOS, dtype=torch.long)
        for t in range(1, codec.seq_len):
            if int(allowed[t].sum()) == 1:  # field token / EOS: forced
                nxt = allowed[t].nonzero()[0].expand(b, 1)
            else:
                logits = model(seq)[:, -1, :] / temperature
                logits = logits.masked_fill(~allowed[t], float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
            seq = torch.cat([seq, nxt], dim=1)
        out.append(seq)
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, codec.seq_len, dtype=torch.long)
