"""Voicebox-style infilling (Le et al., 2023) on espeak-ng speech: the data and its alignment,
the masked-span objective, and the paper's claims at toy scale.

Two models are trained once for the module (seed 0, 800 steps each, ~13 s of one core apiece):
Voicebox's masked-span objective and the full-utterance-loss ablation, identical otherwise. The
claims, each failing when its mechanism is removed:

1. infilling with the audio context is closer to the held-out ground truth than without it;
2. the infilled span takes the voice of its context (a speaker classifier trained on real
   frames picks the context's speaker), also when the context is another speaker's prompt;
3. the masked-span loss infills better than the full-utterance loss.

(Claim 4, few-step flow sampling vs. an autoregressive baseline, is a speed ratio: measured in
``benchmarks/voicebox.py``, not timed here.)
"""

from __future__ import annotations

import math

import pytest
import torch

from assay.generative.voicebox.data import (
    NULL,
    RESERVED,
    SILENCE,
    UNKNOWN,
    SpeechConfig,
    align_frames,
    describe,
    load_speech,
    log_mel,
    mel_filterbank,
)
from assay.generative.voicebox.infill import (
    evaluate_infill,
    evaluate_voice_transfer,
    infill,
    train_speaker_classifier,
    train_voicebox,
    training_masks,
    voicebox_loss,
)
from assay.generative.voicebox.model import ARInfiller, VoiceboxVelocity
from assay.platform.errors import ValidationError
from assay.service.reporting import CollectingReporter, use_reporter

#: Shared by the fixtures and the job test (so the job reuses the corpus cache).
TRAIN = {"iterations": 800, "batch_size": 16, "lr": 6e-3}
SAMPLE = {"steps": 4, "guidance": 0.7}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("voicebox-cache"))


@pytest.fixture(scope="module")
def speech(cache_dir):
    """The default corpus: 6 voices × (48 train + 10 held-out) utterances (~4 s to build)."""
    return load_speech(SpeechConfig(), cache_dir)


@pytest.fixture(scope="module")
def classifier(speech):
    return train_speaker_classifier(speech)


def _train(speech, loss_on: str) -> VoiceboxVelocity:
    torch.manual_seed(0)
    model = VoiceboxVelocity(speech.n_mels, speech.n_labels, width=64, layers=2)
    train_voicebox(model, speech, loss_on=loss_on, generator=torch.Generator().manual_seed(0),
                   **TRAIN)  # fmt: skip
    return model


@pytest.fixture(scope="module")
def masked_model(speech):
    return _train(speech, "masked")


@pytest.fixture(scope="module")
def masked_eval(masked_model, speech, classifier):
    return evaluate_infill(masked_model, speech, classifier=classifier, **SAMPLE)


# ---------------------------------------------------------------------------------------------
# Data: features, alignment, corpus
# ---------------------------------------------------------------------------------------------


def test_mel_filterbank_is_triangular_and_ordered() -> None:
    fb = mel_filterbank(20, 1024, 22050)
    assert fb.shape == (20, 513)
    assert float(fb.max()) <= 1.0 + 1e-6 and float(fb.min()) >= 0.0
    peaks = fb.argmax(1)
    assert bool((peaks[1:] > peaks[:-1]).all())  # centres increase with the band index
    assert bool((fb.sum(1) > 0).all())


def test_log_mel_of_a_tone_peaks_in_its_band() -> None:
    sr, n_fft, hop = 22050, 1024, 768
    fb = mel_filterbank(20, n_fft, sr)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    for f in (300.0, 1200.0, 4000.0):
        t = torch.arange(sr // 2) / sr
        mel = log_mel(torch.sin(2 * math.pi * f * t), fb, n_fft, hop)
        assert mel.shape == (sr // 2 // hop + 1, 20)
        band = int(mel[2:-2].mean(0).argmax())
        bin_f = int((freqs - f).abs().argmin())
        assert int(fb[:, bin_f].argmax()) == band


def test_alignment_rule_labels_each_frame_with_the_phoneme_sounding_at_its_centre() -> None:
    index = {"k": 3, "a": 4}
    events = [("k", 100), ("a", 1600), ("_:", 3000), ("zz", 3500)]
    labels = align_frames(events, n_frames=6, hop=768, index=index)
    # centres 0, 768, 1536, 2304, 3072, 3840: before the first event → silence; a pause →
    # silence; a phoneme missing from the inventory → unknown.
    assert labels.tolist() == [SILENCE, 3, 3, 4, SILENCE, UNKNOWN]


def test_corpus_shapes_alignment_and_normalisation(speech) -> None:
    info = describe(speech)
    assert info["train_utterances"] == 6 * 48 and info["test_utterances"] == 6 * 10
    assert speech.phonemes[: len(RESERVED)] == list(RESERVED) and info["phonemes"] >= 30
    assert {u.speaker for u in speech.test} == set(range(6))
    assert not {u.text for u in speech.train} & {u.text for u in speech.test}
    for u in speech.train[:20] + speech.test[:20]:
        assert u.frames.shape == (len(u), speech.n_mels) and u.phones.shape == (len(u),)
        assert int(u.phones.min()) >= SILENCE and int(u.phones.max()) < speech.n_labels
        assert len(u.phones.unique_consecutive()) >= 4  # several phonemes per utterance
    x = torch.cat([u.frames for u in speech.train])
    torch.testing.assert_close(x.mean(0), torch.zeros(speech.n_mels), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(speech.n_mels), atol=1e-3, rtol=0)
    # The alignment is real: frames labelled with a vowel are louder than those labelled
    # silence or a voiceless stop.
    raw = torch.cat([u.frames for u in speech.train]) * speech.std + speech.mean
    energy = raw.exp().sum(1).log()
    labels = torch.cat([u.phones for u in speech.train])
    ids = {p: i for i, p in enumerate(speech.phonemes)}
    vowels = torch.isin(labels, torch.tensor([ids[p] for p in ("a", "aI", "eI", "i:", "oU")
                                              if p in ids]))  # fmt: skip
    quiet = torch.isin(labels, torch.tensor([SILENCE, ids["p"], ids["t"], ids["k"]]))
    assert float(energy[vowels].mean()) > float(energy[quiet].mean()) + 1.0


def test_corpus_is_cached_on_disk(speech, cache_dir) -> None:
    from assay.generative.voicebox import data as data_mod

    path = data_mod.default_cache_dir(cache_dir) / f"speech-{SpeechConfig().key()}.pt"
    assert path.exists()
    data_mod._MEMO.clear()
    again = load_speech(SpeechConfig(), cache_dir)  # read back, not rebuilt
    assert again.build_seconds == speech.build_seconds
    assert [u.text for u in again.test] == [u.text for u in speech.test]
    torch.testing.assert_close(again.test[0].frames, speech.test[0].frames)


# ---------------------------------------------------------------------------------------------
# The objective, guidance and the AR baseline
# ---------------------------------------------------------------------------------------------


def test_training_masks_are_spans_or_whole_utterances() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.full((4000,), 40)
    m = training_masks(lengths, 40, mask_range=(0.7, 1.0), p_drop=0.3, generator=g)
    frac = m.float().mean(1)
    assert float(frac.min()) >= 0.7 - 1e-6
    # Contiguous: at most one rising edge per row.
    edges = (m[:, 1:] & ~m[:, :-1]).sum(1)
    assert int(edges.max()) <= 1
    # Whole-utterance masks: the p_drop draws plus the span draws that land on 1.
    whole = float((frac == 1).float().mean())
    assert 0.3 < whole < 0.3 + 0.7 * 0.1 + 0.03


@pytest.mark.parametrize("loss_on", ["masked", "full"])
def test_loss_is_taken_on_masked_frames_only(loss_on: str) -> None:
    """Gradients reach the model's output on the masked span only (Voicebox), or on every valid
    frame (the full-utterance ablation)."""
    b, n, m = 6, 20, 4
    out = torch.zeros(b, n, m, requires_grad=True)

    def model(x, t, ctx, mask, phones, valid):
        return out + 0 * x

    lengths = torch.tensor([20, 20, 16, 12, 20, 10])
    valid = torch.arange(n)[None] < lengths[:, None]
    from assay.generative.voicebox.infill import Batch

    batch = Batch(torch.randn(b, n, m) * valid[..., None], torch.ones(b, n, dtype=torch.long),
                  valid, lengths, torch.zeros(b, dtype=torch.long))  # fmt: skip
    loss = voicebox_loss(model, batch, mask_range=(0.5, 0.5), p_drop=0.0, p_uncond=0.0,
                         loss_on=loss_on, generator=torch.Generator().manual_seed(1))  # fmt: skip
    loss.backward()
    touched = out.grad.abs().sum(-1) > 0
    assert not bool((touched & ~valid).any())  # never on padding
    if loss_on == "full":
        assert bool((touched == valid).all())
    else:
        assert touched.sum(1).tolist() == [math.ceil(0.5 * int(x)) for x in lengths]
        assert int((touched[:, 1:] & ~touched[:, :-1]).sum(1).max()) <= 1  # one span


def test_classifier_free_guidance_combines_conditional_and_unconditional() -> None:
    """ṽ = (1 + α)·v(x | ctx, z) − α·v(x | ∅, ∅), integrated by the midpoint rule."""

    class Field(torch.nn.Module):
        def forward(self, x, t, ctx, mask, phones, valid=None):
            cond = (phones != NULL).to(x.dtype)[..., None]  # 1 with labels, 0 without
            return torch.ones_like(x) * (2.0 * cond - 1.0)  # +1 conditional, −1 unconditional

    frames, phones = torch.zeros(2, 5, 3), torch.ones(2, 5, dtype=torch.long)
    mask = torch.ones(2, 5, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(frames.shape, generator=torch.Generator().manual_seed(0))
    for alpha in (0.0, 0.7, 2.0):
        out = infill(Field(), frames, phones, mask, steps=3, guidance=alpha,
                     generator=torch.Generator().manual_seed(0))  # fmt: skip
        torch.testing.assert_close(out, x0 + (1 + alpha) - alpha * -1)
    # Unmasked frames keep the context.
    mask[:, :2] = False
    out = infill(Field(), frames + 5, phones, mask, steps=2, guidance=0.5, generator=g)
    torch.testing.assert_close(out[:, :2], frames[:, :2] + 5)


def test_ar_incremental_infill_matches_teacher_forcing() -> None:
    """The AR baseline's cached decoding computes what its teacher-forced pass computes."""
    torch.manual_seed(0)
    ar = ARInfiller(n_mels=5, n_labels=7, width=16, layers=2, heads=2).eval()
    frames, phones = torch.randn(3, 12, 5), torch.randint(1, 7, (3, 12))
    start, end = torch.tensor([4, 0, 7]), torch.tensor([5, 1, 8])  # one-frame spans
    with torch.no_grad():
        tf = ar(frames, phones)
        out = ar.infill(frames, phones, start, end)
    for i in range(3):
        torch.testing.assert_close(out[i, start[i]], tf[i, start[i]], atol=1e-5, rtol=1e-5)
        keep = torch.ones(12, dtype=torch.bool)
        keep[start[i]] = False
        torch.testing.assert_close(out[i, keep], frames[i, keep])
    # Longer spans feed back the predictions: the second generated frame differs from the
    # teacher-forced one (which saw the true first frame).
    with torch.no_grad():
        out = ar.infill(frames, phones, torch.tensor([3, 3, 3]), torch.tensor([9, 9, 9]))
    assert not torch.allclose(out[:, 4], tf[:, 4])


# ---------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------


def test_claim1_infilling_with_audio_context_is_closer_to_the_truth(masked_eval) -> None:
    ev = masked_eval
    assert ev["infill_mse"] < 0.9 * ev["infill_mse_no_context"], ev
    assert ev["infill_mse"] < 0.6, ev  # well below predicting the mean (≈ 1)


def test_claim2_the_infill_takes_the_voice_of_its_context(
    masked_model, masked_eval, speech, classifier
) -> None:
    ev = masked_eval
    chance = 1 / speech.n_speakers
    assert ev["speaker_accuracy_real"] >= 0.95, ev  # the probe itself works
    assert ev["speaker_accuracy"] >= 0.4 > 2 * chance, ev
    assert ev["speaker_similarity"] > ev["speaker_similarity_no_context"] + 0.2, ev
    assert ev["speaker_accuracy_no_context"] < 0.3, ev
    # Voice prompting: the alignment comes from speaker a, the 12-frame audio prompt from b.
    vt = evaluate_voice_transfer(masked_model, speech, classifier, prompt_frames=12, **SAMPLE)
    assert vt["prompt_speaker_accuracy"] >= 0.4, vt
    assert vt["prompt_speaker_accuracy"] > 3 * vt["source_speaker_accuracy"], vt


def test_claim3_masked_span_loss_infills_better_than_full_utterance_loss(
    masked_eval, speech, classifier
) -> None:
    full = evaluate_infill(_train(speech, "full"), speech, classifier=classifier,
                           without_context=False, **SAMPLE)  # fmt: skip
    assert masked_eval["infill_mse"] < full["infill_mse"], (masked_eval, full)
    assert masked_eval["speaker_similarity"] > full["speaker_similarity"] + 0.05, (
        masked_eval,
        full,
    )


# ---------------------------------------------------------------------------------------------
# The job entry point
# ---------------------------------------------------------------------------------------------


def test_job_reports_progress_and_metrics(cache_dir, speech) -> None:
    from assay.generative.workloads.voicebox import SEARCH_SPACE, run

    rep = CollectingReporter()
    with use_reporter(rep):
        m = run({"iterations": 30, "report_every": 10, "cache_dir": cache_dir, "device": "cpu",
                 "ode_steps": 2, "width": 32})  # fmt: skip
    for key in ("infill_mse", "infill_mse_no_context", "speaker_similarity", "speaker_accuracy",
                "prompt_speaker_accuracy", "sample_ms_per_utterance", "nfe", "final_loss",
                "wall_time_s"):  # fmt: skip
        assert key in m and math.isfinite(m[key]), key
    assert m["nfe"] == 4.0
    steps = [r.step for r in rep.reports]
    assert steps == [10, 20, 30, 30], steps  # three fm_loss reports, then the metrics
    assert {p["name"] for p in SEARCH_SPACE} >= {"lr", "mask_min", "guidance_weight",
                                                   "ode_steps", "width"}  # fmt: skip


@pytest.mark.parametrize(
    ("params", "field"),
    [({"mask_min": 0.9, "mask_max": 0.8}, "mask_max"), ({"width": 30}, "width"),
     ({"loss_on": "all"}, "loss_on"), ({"ode_step": 4}, "ode_step"),
     ({"guidance_weight": "high"}, "guidance_weight")],
)  # fmt: skip
def test_job_rejects_bad_parameters(params, field) -> None:
    from assay.generative.workloads.voicebox import run

    with pytest.raises(ValidationError) as e:
        run(params)
    assert e.value.field == field
