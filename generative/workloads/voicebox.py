"""Workload: Voicebox-style speech infilling as a job, ``run(params) -> metrics``.

Canonical entry point ``assay.generative.workloads.voicebox:run``. Trains the masked-span flow-matching model of :mod:`assay.generative.voicebox` (Le et al., 2023)
on the espeak-ng corpus (built once per configuration into the cache directory), then infills
held-out spans and reports how well — e.g.
``run({"iterations": 800, "guidance_weight": 0.7, "ode_steps": 4})``.

Metrics (all floats; minimise ``infill_mse``, the rest to constrain or track):

* ``infill_mse`` — mean squared error of the infilled span (``eval_mask_ratio`` of each held-out
  utterance, contiguous) against the ground truth, standardised log-mel units;
  ``infill_mse_no_context`` — the same model with the audio context dropped (labels kept);
* ``speaker_similarity`` / ``speaker_accuracy`` — posterior / arg-max rate of the context's
  speaker under a speaker classifier trained on real frames, on the infilled spans
  (``…_no_context`` likewise; chance is 1/speakers);
* ``prompt_speaker_accuracy`` — zero-shot voice prompting: a whole utterance generated from
  its alignment after a prompt by another speaker takes the prompt's voice;
* ``sample_ms_per_utterance`` — wall time of the guided infill of the held-out set divided by
  its size; ``nfe`` — network evaluations per sample (``ode_steps`` × 2 for midpoint; guidance
  evaluates the conditional and unconditional fields in one doubled batch);
* ``final_loss``, ``train_seconds``, ``iterations_per_s``, ``wall_time_s``.

Progress: ``assay.report(step=…, fm_loss=…)`` every ``report_every`` iterations, then the
metrics at ``step=iterations``.

May import :mod:`assay.generative` (the algorithm, the workload plumbing) and ``assay.report``;
nothing of ``assay.service`` or ``assay.storage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assay.generative.workloads.common import Timer, WorkloadConfig, WorkloadRun


@dataclass
class VoiceboxConfig(WorkloadConfig):
    """Parameters of :func:`run`, besides the shared ones (``seed``; ``device``; ``cache_dir``,
    here the corpus cache, default ``$ASSAY_GENERATIVE_CACHE`` or ``<tmp>/assay-voicebox``;
    ``report_every`` in optimiser steps; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`).

    Attributes:
        speakers: Number of voices (the first of
            :data:`~assay.generative.voicebox.data.DEFAULT_VOICES`), 2–6.
        utterances_per_speaker: Training utterances per voice.
        test_per_speaker: Held-out utterances per voice (the evaluation set).
        data_seed: Seed of the corpus (sentences, rates, pitches).
        width: Transformer width (a multiple of ``heads``).
        layers: Transformer blocks (mirrored pairs get U-Net skips).
        heads: Attention heads.
        iterations: Optimiser steps.
        batch_size: Utterances per step.
        lr: Peak Adam learning rate (50 warm-up steps, cosine decay to 10%).
        mask_min, mask_max: Training span fraction ``r ~ U[mask_min, mask_max]`` (paper: 0.7–1).
        p_drop: Probability of masking the whole utterance (no audio context).
        p_uncond: Probability of dropping context and labels (the CFG unconditional model).
        loss_on: ``"masked"`` (Voicebox: loss on masked frames only) or ``"full"`` (ablation).
        ode_steps: Steps of the ODE solver at sampling.
        solver: ``"midpoint"`` or ``"euler"``.
        guidance_weight: Classifier-free guidance ``α`` in ``(1 + α)·v_cond − α·v_uncond``.
        eval_mask_ratio: Fraction of each held-out utterance masked for evaluation.
        prompt_frames: Prompt length of the voice-prompting evaluation (0: skip it).
        max_train_seconds: Stop training after this long (0: no limit).
    """

    workload = "voicebox"

    speakers: int = 6
    utterances_per_speaker: int = 48
    test_per_speaker: int = 10
    data_seed: int = 0
    width: int = 64
    layers: int = 2
    heads: int = 4
    iterations: int = 800
    batch_size: int = 16
    lr: float = 6e-3
    mask_min: float = 0.7
    mask_max: float = 1.0
    p_drop: float = 0.3
    p_uncond: float = 0.2
    loss_on: str = "masked"
    ode_steps: int = 4
    solver: str = "midpoint"
    guidance_weight: float = 0.7
    eval_mask_ratio: float = 0.7
    prompt_frames: int = 12
    max_train_seconds: float = 0.0
    report_every: int = 100

    def validate(self) -> None:
        from assay.generative.voicebox.data import DEFAULT_VOICES

        super().validate()
        n = len(DEFAULT_VOICES)
        self.require(2 <= self.speakers <= n, "speakers", f"must be between 2 and {n}")
        self.at_least(utterances_per_speaker=2, test_per_speaker=1, heads=1)
        self.require(self.width >= 8 and self.width % self.heads == 0, "width",
                     "must be >= 8 and a multiple of heads")  # fmt: skip
        self.at_least(layers=1, iterations=0, batch_size=1)
        self.positive("lr")
        self.require(0 < self.mask_min <= 1, "mask_min", "must be in (0, 1]")
        self.require(self.mask_min <= self.mask_max <= 1, "mask_max", "must be in [mask_min, 1]")
        self.require(0 <= self.p_drop <= 1, "p_drop", "must be in [0, 1]")
        self.require(0 <= self.p_uncond < 1, "p_uncond", "must be in [0, 1)")
        self.require(self.loss_on in ("masked", "full"), "loss_on", "must be masked or full")
        self.at_least(ode_steps=1)
        self.require(self.solver in ("midpoint", "euler"), "solver", "must be midpoint or euler")
        self.require(self.guidance_weight >= 0, "guidance_weight", "must be >= 0")
        self.require(0 < self.eval_mask_ratio <= 1, "eval_mask_ratio", "must be in (0, 1]")
        self.at_least(prompt_frames=0)
        self.require(self.max_train_seconds >= 0, "max_train_seconds", "must be >= 0")


#: The search space worth tuning (JSON form accepted by ``Client.create_experiment``).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "lr", "type": "float", "bounds": [1e-3, 1.5e-2], "log": True},
    {"name": "mask_min", "type": "float", "bounds": [0.3, 0.95]},
    {"name": "p_drop", "type": "float", "bounds": [0.05, 0.6]},
    {"name": "guidance_weight", "type": "float", "bounds": [0.0, 2.0]},
    {"name": "ode_steps", "type": "int", "bounds": [1, 16], "log": True},
    {"name": "width", "type": "choice", "values": [32, 48, 64, 96, 128]},
    {"name": "layers", "type": "int", "bounds": [2, 6]},
]


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """Train Voicebox on the espeak corpus, infill held-out spans, return the metrics above."""
    job = WorkloadRun.start(VoiceboxConfig, params)
    from assay.generative.voicebox.data import DEFAULT_VOICES, SpeechConfig, load_speech
    from assay.generative.voicebox.infill import (
        evaluate_infill,
        evaluate_voice_transfer,
        train_speaker_classifier,
        train_voicebox,
    )
    from assay.generative.voicebox.model import VoiceboxVelocity

    cfg, g, device = job.config, job.generator, job.device
    data = load_speech(
        SpeechConfig(voices=DEFAULT_VOICES[: cfg.speakers],
                     utterances_per_speaker=cfg.utterances_per_speaker,
                     test_per_speaker=cfg.test_per_speaker, seed=cfg.data_seed),
        job.cache_dir,
    )  # fmt: skip
    model = VoiceboxVelocity(data.n_mels, data.n_labels, width=cfg.width, layers=cfg.layers,
                             heads=cfg.heads)  # fmt: skip
    t_train = Timer()
    losses = train_voicebox(
        model, data, iterations=cfg.iterations, batch_size=cfg.batch_size, lr=cfg.lr,
        mask_range=(cfg.mask_min, cfg.mask_max), p_drop=cfg.p_drop, p_uncond=cfg.p_uncond,
        loss_on=cfg.loss_on, device=device, generator=g, report_every=cfg.report_every,
        max_seconds=cfg.max_train_seconds,
    )  # fmt: skip
    train_s = t_train.elapsed
    clf = train_speaker_classifier(data, seed=cfg.data_seed)
    kw = {"steps": cfg.ode_steps, "guidance": cfg.guidance_weight, "method": cfg.solver}
    ev = evaluate_infill(model, data, classifier=clf, eval_mask_ratio=cfg.eval_mask_ratio,
                         device=device, seed=cfg.seed, **kw)  # fmt: skip
    metrics: dict[str, float] = {
        k: ev[k]
        for k in ("infill_mse", "infill_mse_no_context", "speaker_similarity", "speaker_accuracy",
                  "speaker_similarity_no_context", "speaker_accuracy_no_context")
    }  # fmt: skip
    if cfg.prompt_frames > 0:
        vt = evaluate_voice_transfer(model, data, clf, prompt_frames=cfg.prompt_frames,
                                     device=device, seed=cfg.seed, **kw)  # fmt: skip
        metrics["prompt_speaker_accuracy"] = vt["prompt_speaker_accuracy"]
    metrics["sample_ms_per_utterance"] = 1000 * ev["sample_seconds"] / ev["utterances"]
    metrics["nfe"] = float(cfg.ode_steps * (2 if cfg.solver == "midpoint" else 1))
    if losses:
        tail = losses[-50:]
        metrics["final_loss"] = sum(tail) / len(tail)
    metrics["train_seconds"] = train_s
    metrics["iterations_per_s"] = len(losses) / max(train_s, 1e-9)
    return job.finish(metrics, step=cfg.iterations)


__all__ = ["SEARCH_SPACE", "VoiceboxConfig", "run"]
