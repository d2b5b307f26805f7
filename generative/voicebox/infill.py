"""Voicebox training and infilling: masked-span flow matching, CFG, few-step ODE sampling.

Implements the audio model of Le et al., *Voicebox: Text-Guided Multilingual Universal Speech
Generation at Scale* (2023), §3, on the toy corpus of :mod:`assay.generative.voicebox.data`.

**Training objective.** For an utterance ``x`` (``T x M`` frames) with aligned labels ``z``,
draw a mask ``m``: with probability ``p_drop`` the whole utterance (no audio context), otherwise
one contiguous span covering a fraction ``r ~ U[r_min, r_max]`` of the frames (70–100% in the
paper). The context is ``x_ctx = (1 − m) ⊙ x``. With probability ``p_uncond`` both the context
and the labels are dropped (the unconditional model of classifier-free guidance). With the
CondOT path ``x_t = (1 − t) x_0 + t x``, ``x_0 ~ N(0, I)``:

    L = E ‖ m ⊙ (v_θ(x_t, t | x_ctx, m, z) − (x − x_0)) ‖² / Σ m

— the loss is taken on the **masked frames only** (``loss_on="masked"``); the ablation
``loss_on="full"`` takes it on every frame (what claim 3 compares against). Defaults:
``r ~ U[0.7, 1]``, ``p_drop = 0.3``, ``p_uncond = 0.2``. Choices of ours: the mask bit is an
extra input channel (a masked frame and a context frame of value 0 differ), and an example
whose context was dropped counts all its frames as masked.

**Sampling** (:func:`infill`). Integrate ``dx/dt = ṽ(x, t)`` from ``x_0 ~ N(0, I)`` at ``t = 0``
to ``t = 1`` with a few midpoint (or Euler) steps, where classifier-free guidance with weight
``α`` gives ``ṽ = (1 + α)·v(x, t | x_ctx, z) − α·v(x, t | ∅, ∅)``; the output keeps the context
frames and takes the generated ones inside the mask.

**Evaluation** (:func:`evaluate_infill`). Each held-out utterance gets one contiguous span
(``eval_mask_ratio`` of its frames, seeded start); the infill error is the mean squared error on
the span's frames in standardised log-mel units, with the audio context and without it (the
same model, context dropped, labels kept); speaker similarity is the posterior a speaker
classifier trained on real frames gives the utterance's own speaker, pooled over the span's
voiced frames. :class:`~assay.generative.voicebox.model.ARInfiller` is the autoregressive
baseline (left context only).

Imports torch, :mod:`assay.generative.flow_matching` and the sibling modules only.

Example:
    >>> from assay.generative.voicebox.data import Utterance
    >>> us = [Utterance(torch.randn(12, 4), torch.randint(3, 6, (12,)), 0, "a")] * 2
    >>> batch = collate(us)
    >>> model = VoiceboxVelocity(4, 6, width=16, layers=2, heads=2)
    >>> bool(voicebox_loss(model, batch, generator=torch.Generator().manual_seed(0)) >= 0)
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import assay
from assay.generative.flow_matching import condot_path, ode_sample
from assay.generative.voicebox.data import NULL, SILENCE, SpeechData, Utterance
from assay.generative.voicebox.model import ARInfiller, SpeakerClassifier, VoiceboxVelocity


@dataclass
class Batch:
    """Padded utterances.

    Attributes:
        frames: ``B x T x M`` (zero on padding).
        phones: ``B x T`` (null label on padding).
        valid: ``B x T`` bool.
        lengths: ``B``.
        speakers: ``B``.
    """

    frames: Tensor
    phones: Tensor
    valid: Tensor
    lengths: Tensor
    speakers: Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(x.to(device) for x in (self.frames, self.phones, self.valid,
                                               self.lengths, self.speakers)))  # fmt: skip


def collate(utterances: Sequence[Utterance]) -> Batch:
    """Pad ``utterances`` to the longest one."""
    n = max(len(u) for u in utterances)
    m = utterances[0].frames.shape[1]
    b = len(utterances)
    frames = torch.zeros(b, n, m)
    phones = torch.full((b, n), NULL, dtype=torch.long)
    valid = torch.zeros(b, n, dtype=torch.bool)
    for i, u in enumerate(utterances):
        frames[i, : len(u)] = u.frames
        phones[i, : len(u)] = u.phones
        valid[i, : len(u)] = True
    lengths = torch.tensor([len(u) for u in utterances])
    speakers = torch.tensor([u.speaker for u in utterances])
    return Batch(frames, phones, valid, lengths, speakers)


def span_bounds(
    lengths: Tensor, ratio: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One contiguous span per example covering ``⌈ratio·length⌉`` frames at a uniform start.

    Args:
        lengths: ``B`` utterance lengths.
        ratio: ``B`` span fractions in ``[0, 1]``.

    Returns:
        ``(start, end)``, each ``B`` (long), ``end − start ≥ 1``.
    """
    span = torch.ceil(ratio.cpu() * lengths.cpu()).long().clamp(1)
    span = torch.minimum(span, lengths.cpu())
    room = (lengths.cpu() - span + 1).float()
    start = (torch.rand(len(lengths), generator=generator) * room).long()
    return start.to(lengths.device), (start + span).to(lengths.device)


def bounds_to_mask(start: Tensor, end: Tensor, n: int) -> Tensor:
    """``B x n`` bool mask, True on ``[start_i, end_i)``."""
    pos = torch.arange(n, device=start.device)[None]
    return (pos >= start[:, None]) & (pos < end[:, None])


def training_masks(
    lengths: Tensor,
    n: int,
    *,
    mask_range: tuple[float, float] = (0.7, 1.0),
    p_drop: float = 0.3,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Voicebox's training masks: whole utterance w.p. ``p_drop``, else a ``U[mask_range]`` span.

    Returns:
        ``B x n`` bool (True: frame to generate).
    """
    b = len(lengths)
    lo, hi = mask_range
    ratio = lo + (hi - lo) * torch.rand(b, generator=generator)
    ratio = torch.where(torch.rand(b, generator=generator) < p_drop, torch.ones(b), ratio)
    start, end = span_bounds(lengths, ratio, generator)
    return bounds_to_mask(start, end, n)


def voicebox_loss(
    model: nn.Module,
    batch: Batch,
    *,
    mask_range: tuple[float, float] = (0.7, 1.0),
    p_drop: float = 0.3,
    p_uncond: float = 0.2,
    loss_on: str = "masked",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The masked-span conditional flow-matching loss (module docstring).

    Args:
        model: A :class:`VoiceboxVelocity`.
        batch: Padded utterances (on the model's device).
        mask_range: Span fraction range ``(r_min, r_max)``.
        p_drop: Probability of masking the whole utterance.
        p_uncond: Probability of dropping context and labels (for CFG).
        loss_on: ``"masked"`` (Voicebox) or ``"full"`` (every valid frame; the ablation).
        generator: CPU generator for masks, noise and times.
    """
    x1, dev = batch.frames, batch.frames.device
    b, n, _ = x1.shape
    mask = training_masks(batch.lengths.cpu(), n, mask_range=mask_range, p_drop=p_drop,
                          generator=generator).to(dev)  # fmt: skip
    uncond = (torch.rand(b, generator=generator) < p_uncond).to(dev)
    mask = mask | uncond[:, None]
    ctx = x1 * (~mask)[..., None]
    phones = batch.phones.masked_fill(uncond[:, None], NULL)
    x0 = torch.randn(x1.shape, generator=generator).to(x1)
    t = torch.rand(b, generator=generator).to(x1)
    xt, target = condot_path(x0, x1, t)
    err = ((model(xt, t, ctx, mask, phones, batch.valid) - target) ** 2).mean(-1)
    weight = (mask & batch.valid) if loss_on == "masked" else batch.valid
    w = weight.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def batches(
    utterances: Sequence[Utterance], batch_size: int, generator: torch.Generator
) -> Callable[[], Batch]:
    """A sampler of random (with replacement) padded batches."""

    def draw() -> Batch:
        idx = torch.randint(0, len(utterances), (batch_size,), generator=generator).tolist()
        return collate([utterances[i] for i in idx])

    return draw


def train_loop(
    model: nn.Module,
    loss_fn: Callable[[Batch], Tensor],
    draw: Callable[[], Batch],
    *,
    iterations: int,
    lr: float,
    device: torch.device | str = "cpu",
    report_every: int = 0,
    metric: str = "loss",
    max_seconds: float = 0.0,
    warmup: int = 50,
) -> list[float]:
    """Adam with linear warm-up then cosine decay to 10%, gradient clipping at 1; in place.

    Args:
        model: The network (moved to ``device``, left in eval mode).
        loss_fn: ``batch → scalar loss``.
        draw: Batch sampler.
        iterations, lr: Optimisation settings.
        report_every: ``assay.report(step=…, <metric>=mean loss)`` period (0: never).
        metric: Name of the reported loss.
        max_seconds: Stop after this much wall time (0: no limit).
        warmup: Warm-up steps.

    Returns:
        The loss curve.
    """
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, iterations - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    t_end = time.perf_counter() + max_seconds if max_seconds > 0 else None
    losses: list[float] = []
    for it in range(iterations):
        loss = loss_fn(draw().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if report_every and (it + 1) % report_every == 0:
            window = losses[-report_every:]
            assay.report(step=it + 1, **{metric: sum(window) / len(window)})
        if t_end is not None and time.perf_counter() > t_end:
            break
    model.eval()
    return losses


def train_voicebox(
    model: VoiceboxVelocity,
    data: SpeechData,
    *,
    iterations: int = 600,
    batch_size: int = 16,
    lr: float = 2e-3,
    mask_range: tuple[float, float] = (0.7, 1.0),
    p_drop: float = 0.3,
    p_uncond: float = 0.2,
    loss_on: str = "masked",
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    report_every: int = 0,
    max_seconds: float = 0.0,
) -> list[float]:
    """Train ``model`` on ``data.train`` with :func:`voicebox_loss`; returns the loss curve."""
    g = generator or torch.Generator().manual_seed(0)

    def loss_fn(batch: Batch) -> Tensor:
        return voicebox_loss(model, batch, mask_range=mask_range, p_drop=p_drop,
                             p_uncond=p_uncond, loss_on=loss_on, generator=g)  # fmt: skip

    return train_loop(model, loss_fn, batches(data.train, batch_size, g), iterations=iterations,
                      lr=lr, device=device, report_every=report_every, metric="fm_loss",
                      max_seconds=max_seconds)  # fmt: skip


def train_ar(
    model: ARInfiller,
    data: SpeechData,
    *,
    iterations: int = 600,
    batch_size: int = 16,
    lr: float = 2e-3,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    max_seconds: float = 0.0,
) -> list[float]:
    """Teacher-forced MSE training of the AR baseline on ``data.train``."""
    g = generator or torch.Generator().manual_seed(0)

    def loss_fn(batch: Batch) -> Tensor:
        err = ((model(batch.frames, batch.phones) - batch.frames) ** 2).mean(-1)
        w = batch.valid.to(err.dtype)
        return (err * w).sum() / w.sum()

    return train_loop(model, loss_fn, batches(data.train, batch_size, g), iterations=iterations,
                      lr=lr, device=device, max_seconds=max_seconds)  # fmt: skip


@torch.no_grad()
def infill(
    model: VoiceboxVelocity,
    frames: Tensor,
    phones: Tensor,
    mask: Tensor,
    valid: Tensor | None = None,
    *,
    context: bool = True,
    steps: int = 8,
    guidance: float = 0.7,
    method: str = "midpoint",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate the masked frames given the rest (Voicebox's speech infilling).

    Args:
        model: The trained velocity field.
        frames: ``B x T x M`` frames (those inside ``mask`` are not read).
        phones: ``B x T`` aligned labels of the whole utterance.
        mask: ``B x T`` bool, True on the frames to generate.
        valid: ``B x T`` bool, False on padding.
        context: Condition on the unmasked audio (False: the context is dropped, labels kept).
        steps: ODE steps (function evaluations: ``steps`` for Euler, ``2·steps`` for midpoint,
            each on a doubled batch when ``guidance > 0``).
        guidance: Classifier-free guidance weight ``α`` (0: none).
        method: ``"midpoint"`` or ``"euler"`` (or any torchdiffeq solver).
        generator: CPU generator for the initial noise.

    Returns:
        ``B x T x M``: the context frames, with the masked frames generated.
    """
    mask_in = mask if context else torch.ones_like(mask)
    ctx = frames * (~mask_in)[..., None]
    null_ctx = torch.zeros_like(ctx)
    null_mask = torch.ones_like(mask)
    null_phones = torch.full_like(phones, NULL)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        if guidance == 0:
            return model(x, t, ctx, mask_in, phones, valid)
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, null_ctx]),
                     torch.cat([mask_in, null_mask]), torch.cat([phones, null_phones]),
                     None if valid is None else torch.cat([valid, valid]))  # fmt: skip
        cond, uncond = both.chunk(2)
        return (1 + guidance) * cond - guidance * uncond

    x0 = torch.randn(frames.shape, generator=generator).to(frames)
    x1 = ode_sample(velocity, x0, steps=steps, method=method)
    return torch.where(mask[..., None], x1, frames)


def eval_spans(batch: Batch, ratio: float, seed: int = 1234) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic evaluation spans: ``⌈ratio·T_i⌉`` frames at a seeded start per utterance.

    Returns:
        ``(start, end, mask)``.
    """
    g = torch.Generator().manual_seed(seed)
    start, end = span_bounds(batch.lengths, torch.full((len(batch.lengths),), ratio), g)
    return start, end, bounds_to_mask(start, end, batch.frames.shape[1]) & batch.valid


def span_mse(pred: Tensor, batch: Batch, mask: Tensor) -> Tensor:
    """Per-utterance mean squared error over the masked frames: ``B``."""
    err = ((pred - batch.frames) ** 2).mean(-1)
    w = mask.to(err.dtype)
    return (err * w).sum(1) / w.sum(1).clamp_min(1.0)


def train_speaker_classifier(
    data: SpeechData, *, iterations: int = 300, lr: float = 1e-2, seed: int = 0
) -> SpeakerClassifier:
    """Fit :class:`SpeakerClassifier` on the voiced training frames (full-batch Adam)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clf = SpeakerClassifier(data.n_mels, data.n_speakers)
    x = torch.cat([u.frames for u in data.train])
    y = torch.cat([torch.full((len(u),), u.speaker) for u in data.train])
    voiced = torch.cat([u.phones for u in data.train]) > SILENCE
    x, y = x[voiced], y[voiced]
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(iterations):
        idx = torch.randint(0, len(x), (min(4096, len(x)),), generator=g)
        loss = nn.functional.cross_entropy(clf(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    return clf


def speaker_scores(
    clf: SpeakerClassifier, frames: Tensor, batch: Batch, mask: Tensor
) -> dict[str, Tensor]:
    """Speaker similarity of the infilled spans to their context's voice.

    Returns:
        ``prob``: ``B`` posterior of the utterance's own speaker (pooled over the span's voiced
        frames); ``correct``: ``B`` whether it is the arg-max; ``posterior``: ``B x S``.
    """
    weights = mask & (batch.phones > SILENCE)
    post = clf.posterior(frames, weights)
    own = post.gather(1, batch.speakers[:, None])[:, 0]
    return {"prob": own, "correct": (post.argmax(1) == batch.speakers).float(),
            "posterior": post}  # fmt: skip


@torch.no_grad()
def evaluate_infill(
    model: VoiceboxVelocity,
    data: SpeechData,
    *,
    classifier: SpeakerClassifier | None = None,
    utterances: Sequence[Utterance] | None = None,
    eval_mask_ratio: float = 0.7,
    steps: int = 8,
    guidance: float = 0.7,
    method: str = "midpoint",
    without_context: bool = True,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Infill held-out spans and score them (module docstring).

    Returns:
        ``infill_mse`` (with context), ``infill_mse_no_context`` (when ``without_context``),
        ``speaker_similarity`` / ``speaker_accuracy`` (with a classifier; also ``…_no_context``
        and on the ground truth as ``speaker_accuracy_real``), ``sample_seconds`` (wall time of
        the with-context infill) and ``utterances``.
    """
    utts = list(utterances if utterances is not None else data.test)
    batch = collate(utts).to(device)
    _, _, mask = eval_spans(batch, eval_mask_ratio, seed=1234 + seed)
    g = torch.Generator().manual_seed(seed)
    model = model.to(device).eval()
    kw = {"steps": steps, "guidance": guidance, "method": method}
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pred = infill(model, batch.frames, batch.phones, mask, batch.valid, generator=g, **kw)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    out: dict[str, float] = {
        "sample_seconds": time.perf_counter() - t0,
        "utterances": float(len(utts)),
        "infill_mse": float(span_mse(pred, batch, mask).mean()),
    }
    pred_nc = None
    if without_context:
        pred_nc = infill(model, batch.frames, batch.phones, mask, batch.valid, context=False,
                         generator=g, **kw)  # fmt: skip
        out["infill_mse_no_context"] = float(span_mse(pred_nc, batch, mask).mean())
    if classifier is not None:
        clf = classifier.to(device)
        s = speaker_scores(clf, pred, batch, mask)
        out["speaker_similarity"] = float(s["prob"].mean())
        out["speaker_accuracy"] = float(s["correct"].mean())
        out["speaker_accuracy_real"] = float(speaker_scores(clf, batch.frames, batch, mask)[
            "correct"].mean())  # fmt: skip
        if pred_nc is not None:
            s = speaker_scores(clf, pred_nc, batch, mask)
            out["speaker_similarity_no_context"] = float(s["prob"].mean())
            out["speaker_accuracy_no_context"] = float(s["correct"].mean())
    return out


def prompt_pairs(utterances: Sequence[Utterance], n_speakers: int) -> list[tuple[int, int]]:
    """Pairs ``(prompt, target)`` of utterance indices with different speakers.

    Target ``i`` (speaker ``a``) is paired with the first utterance of speaker
    ``(a + 1 + i mod (S − 1)) mod S`` after it (cyclically), so every other voice prompts.
    """
    by_speaker: dict[int, list[int]] = {}
    for i, u in enumerate(utterances):
        by_speaker.setdefault(u.speaker, []).append(i)
    pairs = []
    for i, u in enumerate(utterances):
        other = (u.speaker + 1 + i % max(1, n_speakers - 1)) % n_speakers
        pool = by_speaker.get(other) or [j for j in range(len(utterances)) if j != i]
        pairs.append((pool[i % len(pool)], i))
    return pairs


@torch.no_grad()
def evaluate_voice_transfer(
    model: VoiceboxVelocity,
    data: SpeechData,
    classifier: SpeakerClassifier,
    *,
    utterances: Sequence[Utterance] | None = None,
    prompt_frames: int = 12,
    steps: int = 8,
    guidance: float = 0.7,
    method: str = "midpoint",
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Zero-shot voice prompting (Voicebox's TTS setting): whose voice does the infill take?

    Each held-out target utterance (speaker ``a``) keeps its alignment ``z`` — durations and
    all — but its audio is replaced by a prompt: the first ``prompt_frames`` frames of an
    utterance by another speaker ``b`` are prepended as context and the whole target is
    generated. The speaker classifier then scores the generated frames.

    Returns:
        ``prompt_speaker_accuracy`` (arg-max is ``b``), ``prompt_speaker_similarity`` (posterior of
        ``b``), ``source_speaker_accuracy`` (arg-max is ``a``: the voice the alignment came from).
    """
    utts = list(utterances if utterances is not None else data.test)
    seqs, prompt_spk = [], []
    for p, i in prompt_pairs(utts, data.n_speakers):
        pu, tu = utts[p], utts[i]
        k = min(prompt_frames, len(pu))
        seqs.append(Utterance(torch.cat([pu.frames[:k], tu.frames]),
                              torch.cat([pu.phones[:k], tu.phones]), tu.speaker, tu.text))  # fmt: skip
        prompt_spk.append((pu.speaker, k))
    batch = collate(seqs).to(device)
    mask = torch.zeros_like(batch.valid)
    for j, (_, k) in enumerate(prompt_spk):
        mask[j, k:] = True
    mask &= batch.valid
    g = torch.Generator().manual_seed(seed)
    pred = infill(model.to(device).eval(), batch.frames, batch.phones, mask, batch.valid,
                  steps=steps, guidance=guidance, method=method, generator=g)  # fmt: skip
    post = classifier.to(device).posterior(pred, mask & (batch.phones > SILENCE))
    b_spk = torch.tensor([b for b, _ in prompt_spk], device=post.device)
    return {
        "prompt_speaker_accuracy": float((post.argmax(1) == b_spk).float().mean()),
        "prompt_speaker_similarity": float(post.gather(1, b_spk[:, None]).mean()),
        "source_speaker_accuracy": float((post.argmax(1) == batch.speakers).float().mean()),
    }


@torch.no_grad()
def evaluate_ar(
    model: ARInfiller,
    data: SpeechData,
    *,
    utterances: Sequence[Utterance] | None = None,
    eval_mask_ratio: float = 0.7,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Infill the same spans as :func:`evaluate_infill` with the AR baseline."""
    utts = list(utterances if utterances is not None else data.test)
    batch = collate(utts).to(device)
    start, end, mask = eval_spans(batch, eval_mask_ratio, seed=1234 + seed)
    model = model.to(device).eval()
    t0 = time.perf_counter()
    pred = model.infill(batch.frames, batch.phones, start, end)
    return {"sample_seconds": time.perf_counter() - t0,
            "infill_mse": float(span_mse(pred, batch, mask).mean())}  # fmt: skip
