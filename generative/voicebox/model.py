"""Networks of the Voicebox workload: the flow's velocity field, an AR baseline, a speaker-ID probe.

* :class:`ConvPositional` — convolutional positional embedding (depthwise convolution, as in
  wav2vec 2.0 and Voicebox); causal with an incremental state for the AR baseline.
* :class:`FrameTransformer` — a pre-LayerNorm Transformer over frames with Voicebox's
  U-Net-style skip connections (the output of layer ``i`` is
  concatenated to the input of layer ``L − 1 − i`` and projected back); attention is
  bidirectional with a key-padding mask, or causal with a key/value cache for incremental
  decoding.
* :class:`VoiceboxVelocity` — ``v_θ(x_t, t | x_ctx, m, z)`` (Le et al., 2023, §3): per frame the
  noisy frame ``x_t``, the context frame ``x_ctx = (1 − m)·x``, the mask bit ``m`` and the
  embedding of the aligned phoneme ``z`` are concatenated and projected to the model width; the
  flow time enters as a sinusoidal embedding added to every position.
* :class:`ARInfiller` — the autoregressive baseline of the same backbone (causal): predicts
  frame ``n`` from frames ``< n`` and the phoneme at ``n`` (MSE regression, teacher forcing),
  decodes a span frame by frame with a key/value cache.
* :class:`SpeakerClassifier` — a per-frame MLP on log-mel frames; an utterance's (or span's)
  speaker posterior is the softmax of its frames' mean log-probabilities.

Imports torch and :mod:`assay.generative.flow_matching` (the time embedding) only.

Example:
    >>> v = VoiceboxVelocity(n_mels=8, n_labels=10, width=32, layers=2, heads=2)
    >>> x = torch.randn(3, 20, 8)
    >>> ph = torch.randint(1, 10, (3, 20))
    >>> m = torch.ones(3, 20, dtype=torch.bool)
    >>> v(x, torch.rand(3), torch.zeros_like(x), m, ph).shape
    torch.Size([3, 20, 8])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from assay.generative.flow_matching import TimeEmbedding

#: A per-layer key/value cache for incremental causal decoding.
KVCache = list[dict[str, Tensor]]


class ConvPositional(nn.Module):
    """Convolutional positional embedding ``h + GELU(DepthwiseConv_k(h))`` (wav2vec 2.0, Voicebox).

    Gives every frame its neighbourhood, so attention need not learn locality from absolute
    positions. ``causal=True`` pads on the left only and can run incrementally with a state
    holding the last ``k − 1`` inputs.

    Args:
        width: Channels.
        kernel: Kernel size ``k`` (odd for the non-causal form).
        causal: Left padding only.
    """

    def __init__(self, width: int, kernel: int = 7, causal: bool = False) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.conv = nn.Conv1d(width, width, kernel, groups=width)

    def forward(
        self, h: Tensor, valid: Tensor | None = None, state: dict[str, Tensor] | None = None
    ) -> Tensor:
        """``h``: ``B x T x d`` → ``B x T x d``; ``valid`` zeroes padding before the convolution;
        ``state`` (causal only) carries the previous inputs across incremental calls."""
        x = h if valid is None else h * valid[..., None].to(h.dtype)
        x = x.transpose(1, 2)
        k = self.kernel
        if self.causal:
            prev = x.new_zeros(x.shape[0], x.shape[1], k - 1)
            if state is not None and "conv" in state:
                prev = state["conv"]
            x = torch.cat([prev, x], 2)
            if state is not None:
                state["conv"] = x[:, :, -(k - 1) :]
        else:
            x = F.pad(x, (k // 2, k - 1 - k // 2))
        return h + F.gelu(self.conv(x)).transpose(1, 2)


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``.

    Args:
        dim: Width ``d``.
        heads: Attention heads (``d`` divisible by it).
        ffn_mult: Hidden width of the feed-forward net is ``ffn_mult·d``.
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int = 2) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(),
                                nn.Linear(ffn_mult * dim, dim))  # fmt: skip

    def forward(
        self,
        x: Tensor,
        *,
        key_valid: Tensor | None = None,
        causal: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """``x``: ``B x T x d`` → ``B x T x d``.

        Args:
            key_valid: ``B x T`` bool, False for padding (not attended to).
            causal: Position ``i`` attends to ``j ≤ i`` only.
            cache: For causal decoding: previous keys/values are read from and the new ones
                appended to this dict (then ``x`` holds only the new positions).
        """
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        mask = None
        if key_valid is not None:
            mask = key_valid[:, None, None, :]
        if causal and t > 1:
            tri = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
            mask = tri if mask is None else mask & tri
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(out.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class FrameTransformer(nn.Module):
    """Transformer over frames with U-Net skips between mirrored layers (Voicebox §3.3).

    Args:
        width: Model width ``d``.
        layers: Number of blocks (the first ``⌊L/2⌋`` feed skips to the last ``⌊L/2⌋``).
        heads: Attention heads.
    """

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.skips = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(layers // 2))
        self.norm = nn.LayerNorm(width)

    def forward(
        self,
        h: Tensor,
        *,
        key_valid: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """``h``: ``B x T x d`` (positions already added) → ``B x T x d``."""
        n = len(self.blocks)
        half = n // 2
        saved: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i >= n - half:
                h = self.skips[i - (n - half)](torch.cat([h, saved.pop()], -1))
            h = block(h, key_valid=key_valid, causal=causal,
                      cache=cache[i] if cache is not None else None)  # fmt: skip
            if i < half:
                saved.append(h)
        return self.norm(h)


class VoiceboxVelocity(nn.Module):
    """The conditional velocity field ``v_θ(x_t, t | x_ctx, m, z)`` of Voicebox.

    Args:
        n_mels: Frame dimension ``M``.
        n_labels: Size of the phoneme label set (id 0 is the null label: dropped text).
        width, layers, heads: Backbone size (see :class:`FrameTransformer`).
        conv_kernel: Kernel of the convolutional positional embedding.

    Example:
        >>> VoiceboxVelocity(4, 5, width=16, layers=2, heads=2)(
        ...     torch.zeros(1, 6, 4), torch.zeros(1), torch.zeros(1, 6, 4),
        ...     torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 6, dtype=torch.long)).shape
        torch.Size([1, 6, 4])
    """

    def __init__(
        self,
        n_mels: int,
        n_labels: int,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        conv_kernel: int = 7,
    ) -> None:
        super().__init__()
        self.n_mels, self.width = n_mels, width
        emb = max(8, width // 2)
        self.phone = nn.Embedding(n_labels, emb)
        self.inp = nn.Linear(2 * n_mels + 1 + emb, width)
        self.time = TimeEmbedding(width)
        self.conv_pos = ConvPositional(width, conv_kernel)
        self.backbone = FrameTransformer(width, layers, heads)
        self.out = nn.Linear(width, n_mels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        ctx: Tensor,
        mask: Tensor,
        phones: Tensor,
        valid: Tensor | None = None,
    ) -> Tensor:
        """Velocity at every frame.

        Args:
            x: ``B x T x M`` state ``x_t``.
            t: ``B`` flow times.
            ctx: ``B x T x M`` context frames (zero where masked or dropped).
            mask: ``B x T`` bool, True where the frame is to be generated (no context).
            phones: ``B x T`` aligned labels (0 = null: text dropped).
            valid: ``B x T`` bool, False on padding.

        Returns:
            ``B x T x M``.
        """
        h = self.inp(torch.cat([x, ctx, mask[..., None].to(x.dtype), self.phone(phones)], -1))
        h = self.conv_pos(h, valid) + self.time(t)[:, None]
        return self.out(self.backbone(h, key_valid=valid))


class ARInfiller(nn.Module):
    """Autoregressive frame model ``x̂_n = f_θ(x_{<n}, z_{≤n})``: the same backbone, causal.

    Input at position ``n``: the previous frame ``x_{n−1}`` (zeros and a start flag at ``n = 0``)
    and the label ``z_n``; causal convolutional positions and causal attention. Trained by
    teacher forcing with the MSE ``‖x̂_n − x_n‖²``; infills a span by decoding its frames one
    after another from the left context with a key/value cache (it cannot use the right context
    — one reason Voicebox is non-autoregressive).

    Args:
        n_mels: Frame dimension ``M``.
        n_labels: Size of the phoneme label set.
        width, layers, heads, conv_kernel: Backbone size (as :class:`VoiceboxVelocity`).
    """

    def __init__(
        self,
        n_mels: int,
        n_labels: int,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        conv_kernel: int = 7,
    ) -> None:
        super().__init__()
        self.n_mels, self.width = n_mels, width
        emb = max(8, width // 2)
        self.phone = nn.Embedding(n_labels, emb)
        self.inp = nn.Linear(n_mels + 1 + emb, width)
        self.conv_pos = ConvPositional(width, conv_kernel, causal=True)
        self.backbone = FrameTransformer(width, layers, heads)
        self.out = nn.Linear(width, n_mels)

    def _step(
        self, prev: Tensor, first: Tensor, phones: Tensor, state: dict[str, Any] | None = None
    ) -> Tensor:
        h = self.inp(torch.cat([prev, first[..., None].to(prev.dtype), self.phone(phones)], -1))
        h = self.conv_pos(h, state=state)
        cache = state["kv"] if state is not None else None
        return self.out(self.backbone(h, causal=True, cache=cache))

    def forward(self, frames: Tensor, phones: Tensor) -> Tensor:
        """Teacher-forced predictions: ``frames``/``phones`` ``B x T (x M)`` → ``B x T x M``
        (position ``n`` predicts ``frames[:, n]`` from ``frames[:, :n]``)."""
        b, n, m = frames.shape
        prev = torch.cat([frames.new_zeros(b, 1, m), frames[:, :-1]], 1)
        first = torch.zeros(b, n, dtype=torch.bool, device=frames.device)
        first[:, 0] = True
        return self._step(prev, first, phones)

    @torch.no_grad()
    def infill(self, frames: Tensor, phones: Tensor, start: Tensor, end: Tensor) -> Tensor:
        """Decode ``frames[i, start_i:end_i]`` from the left context, one frame at a time.

        The shared prefix ``[0, min start)`` is encoded in one causal pass; then every position
        up to ``max end`` is decoded incrementally (key/value cache, convolution state), feeding
        back true frames inside each example's context and predictions inside its span.

        Args:
            frames: ``B x T x M`` ground truth (only the left context is read).
            phones: ``B x T`` labels.
            start, end: ``B`` span bounds (``0 ≤ start < end ≤ T``).

        Returns:
            ``B x T x M``: ``frames`` with the spans replaced by the predictions.
        """
        b, n, m = frames.shape
        out = frames.clone()
        s0, e1 = int(start.min()), int(end.max())
        state: dict[str, Any] = {"kv": [{} for _ in self.backbone.blocks]}
        first = torch.zeros(b, n, dtype=torch.bool, device=frames.device)
        first[:, 0] = True
        prev_all = torch.cat([frames.new_zeros(b, 1, m), frames[:, :-1]], 1)
        if s0 > 0:
            self._step(prev_all[:, :s0], first[:, :s0], phones[:, :s0], state)
        pred = frames.new_zeros(b, m)
        for pos in range(s0, e1):
            prev = prev_all[:, pos]
            if pos > s0:  # feed back the prediction where the previous frame was generated
                generated = (start <= pos - 1) & (pos - 1 < end)
                prev = torch.where(generated[:, None], pred, prev)
            sl = slice(pos, pos + 1)
            pred = self._step(prev[:, None], first[:, sl], phones[:, sl], state)[:, 0]
            write = (start <= pos) & (pos < end)
            out[:, pos] = torch.where(write[:, None], pred, out[:, pos])
        return out


class SpeakerClassifier(nn.Module):
    """Per-frame speaker classifier ``p(s | x_f)`` (an MLP on one log-mel frame).

    Args:
        n_mels: Frame dimension.
        n_speakers: Number of speakers.
        hidden: Hidden width.
    """

    def __init__(self, n_mels: int, n_speakers: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_mels, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, n_speakers))  # fmt: skip

    def forward(self, frames: Tensor) -> Tensor:
        """``... x M`` → ``... x S`` logits."""
        return self.net(frames)

    def posterior(self, frames: Tensor, weights: Tensor) -> Tensor:
        """Speaker posterior of frame sets: softmax of the weighted mean per-frame log-probability.

        Args:
            frames: ``B x T x M``.
            weights: ``B x T`` (e.g. 1 on the frames of a span that are not silence).

        Returns:
            ``B x S`` probabilities.
        """
        logp = torch.log_softmax(self(frames), -1)
        w = weights.to(logp.dtype)
        pooled = (logp * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
        return torch.softmax(pooled, -1)
