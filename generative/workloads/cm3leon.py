"""CM3Leon as a job: retrieval-augmented pre-training, multi-task SFT, guided decoding, scores.

The entry point :func:`run` (``"assay.generative.workloads.cm3leon:run"``) builds the digits
corpus and the dense retriever (:mod:`assay.generative.cm3leon`), pre-trains a decoder-only
token model with ``retrieved_k`` retrieved documents prepended, fine-tunes it on text→image,
image→text, lower-half infilling and caption-free examples, and scores it on the held-out
digits: held-out NLL, a digit classifier's accuracy on text→image samples (plain sampling,
classifier-free guidance, TopK contrastive decoding), a Fréchet distance in the classifier's
feature space, caption accuracy, infilling PSNR. Progress goes to ``assay.report`` (training
losses every ``report_every`` steps, the metrics at the end).

The retriever, the codebook and the classifier do not depend on the tuned parameters: the
retriever and classifier are trained once per process and, with ``cache_dir`` (or
``$ASSAY_GENERATIVE_CACHE``), once per disk cache.

Example:
    >>> run({"pretrain_steps": 20, "sft_steps": 10, "eval_samples": 20,
    ...      "device": "cpu"})["caption_accuracy"]  # doctest: +SKIP
    0.2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from assay.generative import cm3leon as cm
from assay.generative.workloads.common import Timer, WorkloadConfig, WorkloadRun

DECODINGS = ("plain", "cfg", "contrastive")


@dataclass
class CM3LeonConfig(WorkloadConfig):
    """Parameters of :func:`run`, besides the shared ones (``seed``; ``device``; ``cache_dir``,
    the disk cache of the retriever and the classifier; ``report_every`` in training steps; see
    :class:`~assay.generative.workloads.common.WorkloadConfig`).

    Attributes:
        retrieved_k: Documents retrieved and prepended per example (0: no retrieval).
        mmr_lambda: Relevance/diversity trade-off of the MMR retriever (1: nearest neighbours).
        retrieval_dropout: Pre-training: probability of an example without its documents.
        sft_retrieval_dropout: The same in SFT (so the model also works without retrieval).
        uncond_prob: Probability of a caption-free example (the unconditional stream of CFG
            and contrastive decoding).
        cm3_prob: Pre-training: probability of the causally-masked (span moved to the end)
            layout.
        codebook_size: Image-token codebook size (k-means over 2×2 patches).
        width, layers, heads: Transformer size.
        lr: AdamW learning rate of both stages (cosine-decayed to 10%).
        batch_size: Main documents per step.
        pretrain_steps: Retrieval-augmented pre-training steps.
        sft_steps: Multi-task SFT steps.
        decoding: Which decoding gives ``classifier_accuracy`` and ``frechet_distance``:
            ``"plain"``, ``"cfg"`` or ``"contrastive"`` (all three are reported).
        cfg_weight: Classifier-free guidance weight ``w``.
        contrastive_alpha: CD-K plausibility factor ``α``.
        contrastive_k: CD-K's ``k`` (the ``k``-th largest probability sets the threshold).
        temperature: Sampling temperature of all three decodings.
        eval_samples: Text→image samples per decoding.
        retriever_steps: Training steps of the dual-encoder retriever.
        classifier_iterations: Training steps of the digits classifier behind the metrics
            (800: the classifier the other digits workloads use, shared through the cache).
        max_train_seconds: Wall-time cap of each training stage (0: none).
    """

    workload = "cm3leon"

    report_every: int = 50
    retrieved_k: int = 2
    mmr_lambda: float = 0.7
    retrieval_dropout: float = 0.1
    sft_retrieval_dropout: float = 0.3
    uncond_prob: float = 0.15
    cm3_prob: float = 0.5
    codebook_size: int = 32
    width: int = 64
    layers: int = 2
    heads: int = 4
    lr: float = 3e-3
    batch_size: int = 64
    pretrain_steps: int = 600
    sft_steps: int = 300
    decoding: str = "contrastive"
    cfg_weight: float = 3.0
    contrastive_alpha: float = 0.1
    contrastive_k: int = 1
    temperature: float = 1.0
    eval_samples: int = 300
    retriever_steps: int = 300
    classifier_iterations: int = 800
    max_train_seconds: float = 0.0

    def validate(self) -> None:
        super().validate()
        self.require(0 <= self.retrieved_k <= 8, "retrieved_k", "must be in [0, 8]")
        self.require(0 <= self.mmr_lambda <= 1, "mmr_lambda", "must be in [0, 1]")
        for name in ("retrieval_dropout", "sft_retrieval_dropout", "uncond_prob", "cm3_prob"):
            self.require(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        self.require(2 <= self.codebook_size <= 512, "codebook_size", "must be in [2, 512]")
        self.at_least(width=8, heads=1)
        self.require(self.width % self.heads == 0, "heads", "must divide width")
        self.require(1 <= self.layers <= 24, "layers", "must be in [1, 24]")
        self.positive("lr")
        self.at_least(batch_size=2, pretrain_steps=0, sft_steps=0)
        self.require(self.decoding in DECODINGS, "decoding", f"must be one of {DECODINGS}")
        self.require(self.cfg_weight >= 0, "cfg_weight", "must be >= 0")
        self.require(0 < self.contrastive_alpha <= 1, "contrastive_alpha", "must be in (0, 1]")
        self.at_least(contrastive_k=1, eval_samples=10, retriever_steps=1,
                      classifier_iterations=1)  # fmt: skip
        self.require(self.temperature >= 0, "temperature", "must be >= 0")
        self.require(self.max_train_seconds >= 0, "max_train_seconds", "must be >= 0")


#: The search space worth tuning (JSON form accepted by ``Client.create_experiment``).
SEARCH_SPACE: list[dict[str, Any]] = [
    {"name": "retrieved_k", "type": "int", "bounds": [0, 3]},
    {"name": "cfg_weight", "type": "float", "bounds": [1.0, 6.0]},
    {"name": "contrastive_alpha", "type": "float", "bounds": [0.01, 0.5], "log": True},
    {"name": "lr", "type": "float", "bounds": [3e-4, 1e-2], "log": True},
    {"name": "mmr_lambda", "type": "float", "bounds": [0.3, 1.0]},
    {"name": "uncond_prob", "type": "float", "bounds": [0.05, 0.3]},
    {"name": "width", "type": "int", "bounds": [32, 128], "log": True},
    {"name": "decoding", "type": "choice", "values": ["plain", "cfg", "contrastive"]},
]


def decodings(cfg: CM3LeonConfig) -> dict[str, cm.Decoding]:
    """The three decodings with the config's settings."""
    t = cfg.temperature
    return {
        "plain": cm.Decoding("plain", temperature=t),
        "cfg": cm.Decoding("cfg", cfg_weight=cfg.cfg_weight, temperature=t),
        "contrastive": cm.Decoding(
            "contrastive", alpha=cfg.contrastive_alpha, top_k=cfg.contrastive_k, temperature=t
        ),
    }


def retriever(cfg: CM3LeonConfig, corpus: cm.DigitsCorpus) -> cm.DualEncoder:
    """The dual-encoder retriever, trained once per process (and disk cache)."""
    from assay.generative.workloads.pretrained import cached, config_key

    return cached(  # type: ignore[return-value]
        config_key("cm3leon_retriever", cfg.retriever_steps, cfg.seed),
        lambda: cm.train_retriever(corpus, steps=cfg.retriever_steps, seed=cfg.seed),
        cache_dir=cfg.cache_dir or None,
        factory=cm.DualEncoder,
    )


def classifier(cfg: CM3LeonConfig, device: torch.device) -> nn.Module:
    """The digits classifier behind the metrics (see ``classifier_iterations``)."""
    from assay.generative.rewards import DigitsClassifier, train_digits_classifier
    from assay.generative.workloads.pretrained import cached, config_key, digits_classifier

    if cfg.classifier_iterations == 800:
        return digits_classifier(cache_dir=cfg.cache_dir or None, device=device)
    return cached(
        config_key("digits_classifier", cfg.classifier_iterations, 0),
        lambda: train_digits_classifier(iterations=cfg.classifier_iterations, device=device)[0],
        cache_dir=cfg.cache_dir or None,
        factory=DigitsClassifier,
    )


def run(params: dict[str, Any] | None = None) -> dict[str, float]:
    """Train and score a toy CM3Leon.

    Metrics (all floats): ``classifier_accuracy`` and ``frechet_distance`` (of the
    ``decoding`` chosen; maximise / minimise), ``accuracy_plain``, ``accuracy_cfg``,
    ``accuracy_contrastive`` and ``frechet_*`` likewise, ``frechet_reconstruction`` (the
    codebook's floor), ``caption_accuracy`` (chance 0.1), ``caption_accuracy_no_retrieval``,
    ``caption_exact``, ``heldout_nll``, ``heldout_nll_without_retrieved`` (``k > 0``),
    ``infill_psnr``, ``pretrain_loss``, ``sft_loss``, ``train_steps_per_s``,
    ``t2i_samples_per_s``, ``wall_time_s`` (see :func:`assay.generative.cm3leon.evaluate`).
    """
    job = WorkloadRun.start(CM3LeonConfig, params)
    cfg, g, device = job.config, job.generator, job.device
    corpus = cm.load_corpus(cfg.codebook_size, seed=cfg.seed)
    k = cfg.retrieved_k
    retrieval = None
    if k:
        retrieval = cm.build_retrieval(corpus, retriever(cfg, corpus), k, lam=cfg.mmr_lambda)
    clf = classifier(cfg, device).to(device)
    model = cm.new_model(cfg.codebook_size, k, width=cfg.width, layers=cfg.layers,
                         heads=cfg.heads)  # fmt: skip
    common = {
        "k": k, "batch_size": cfg.batch_size, "lr": cfg.lr, "uncond_prob": cfg.uncond_prob,
        "report_every": cfg.report_every, "max_seconds": cfg.max_train_seconds,
    }  # fmt: skip
    t_train = Timer()
    pre = cm.pretrain(
        model, corpus, retrieval,
        cm.TrainSettings(steps=cfg.pretrain_steps, retrieval_dropout=cfg.retrieval_dropout,
                         cm3_prob=cfg.cm3_prob, report_prefix="pretrain", **common),
        device=device, generator=g,
    )  # fmt: skip
    sft = cm.finetune(
        model, corpus, retrieval,
        cm.TrainSettings(steps=cfg.sft_steps, retrieval_dropout=cfg.sft_retrieval_dropout,
                         report_prefix="sft", step_offset=len(pre), **common),
        device=device, generator=g,
    )  # fmt: skip
    steps = len(pre) + len(sft)
    train_s = t_train.elapsed
    metrics = cm.evaluate(model, corpus, retrieval, k, clf, decodings(cfg),
                          samples=cfg.eval_samples, device=device, generator=g)  # fmt: skip
    metrics["classifier_accuracy"] = metrics[f"accuracy_{cfg.decoding}"]
    metrics["frechet_distance"] = metrics[f"frechet_{cfg.decoding}"]
    if pre:  # a skipped stage has no loss
        metrics["pretrain_loss"] = sum(pre[-20:]) / len(pre[-20:])
    if sft:
        metrics["sft_loss"] = sum(sft[-20:]) / len(sft[-20:])
    metrics["train_steps_per_s"] = steps / max(train_s, 1e-9)
    return job.finish(metrics, step=steps)


__all__ = ["DECODINGS", "SEARCH_SPACE", "CM3LeonConfig", "decodings", "run"]
