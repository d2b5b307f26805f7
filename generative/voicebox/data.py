"""Speech made here: espeak-ng utterances by several voices → log-mel frames + aligned phonemes.

Voicebox (Le et al., 2023) learns from speech paired with a frame-level phone alignment. No
corpus is downloaded: Debian's ``espeak-ng`` (``apt-get install espeak-ng``; ``make espeak``)
speaks short sentences from a small grammar in several voices — the "speakers" — with a random
speaking rate and pitch per utterance, and this module turns each waveform into log-mel frames.

**Synthesis.** ``libespeak-ng`` is driven in-process through :mod:`ctypes` (synchronous mode,
22 050 Hz) so that its *phoneme events* come back with the audio: espeak reports, for every
phoneme it speaks, the phoneme's mnemonic (``"k"``, ``"aU"``, ``"@2"``…) and the sample at which
it starts in the output.

**Alignment rule.** Frame ``f`` is centred on sample ``f·hop`` (``torch.stft(center=True)``);
its label is the phoneme whose event is the last one at or before that sample (espeak's own
phoneme start times, so the alignment is exact for the synthesizer). Frames before the first
phoneme event and espeak's pause phonemes (``_``, ``_:``, ``_!``…) get the silence label.

**Features.** Hann-windowed STFT (``n_fft`` 1024, hop 768 ≈ 35 ms), power spectrum, a
triangular mel filterbank (HTK mel scale, ``n_mels`` bands between 60 Hz and 8 kHz, our own
code), ``log(mel + 1e-5)``; frames are then standardised per band with the training split's
mean and standard deviation (:attr:`SpeechData.mean` / :attr:`SpeechData.std`).

**Cache.** :func:`load_speech` builds the data set once per configuration and keeps it as one
``.pt`` file under a cache directory (the argument, ``$ASSAY_GENERATIVE_CACHE`` or
``<tmp>/assay-voicebox``); a few hundred utterances take a few seconds. As a script::

    python -m assay.generative.voicebox.data --out /tmp/speech-cache

This module imports only torch, numpy and the standard library (plus ``assay.platform.errors``).

Example:
    >>> data = load_speech(SpeechConfig(utterances_per_speaker=4, test_per_speaker=1))  # doctest: +SKIP
    >>> u = data.train[0]  # doctest: +SKIP
    >>> u.frames.shape[1] == data.n_mels, u.phones.shape == u.frames.shape[:1]  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import hashlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from assay.platform.errors import ValidationError

#: Voices (espeak-ng ``language+variant``) used as speakers by default: two male, two female,
#: a creaky and a Klatt-synthesised one — distinct timbres, the same English phoneme set.
DEFAULT_VOICES: tuple[str, ...] = (
    "en-us+m1",
    "en-us+m3",
    "en-us+f1",
    "en-us+f4",
    "en-us+croak",
    "en-us+klatt",
)

#: Label ids reserved before the phoneme inventory: 0 = null (dropped text, padding), 1 = silence,
#: 2 = a phoneme not seen in the training split.
NULL, SILENCE, UNKNOWN = 0, 1, 2
RESERVED = ("<null>", "<sil>", "<unk>")

_DETERMINERS = ("the", "a", "my", "your", "one", "this", "that", "our")
_ADJECTIVES = ("quick", "lazy", "green", "small", "happy", "quiet", "bright", "old", "soft",
               "heavy", "strange", "yellow", "warm", "sharp", "gentle", "brave")  # fmt: skip
_NOUNS = ("fox", "dog", "cat", "house", "river", "teacher", "garden", "window", "machine",
          "violin", "bird", "engine", "judge", "shoe", "boat", "cheese", "zebra", "thumb",
          "mountain", "pilot")  # fmt: skip
_VERBS = ("jumps", "sings", "waits", "sleeps", "runs", "shines", "breathes", "works", "moves",
          "falls", "grows", "changes", "vanishes", "rings", "swims", "thinks")  # fmt: skip
_ADVERBS = ("today", "slowly", "again", "outside", "quickly", "there", "at night", "with joy",
            "every day", "too much")  # fmt: skip


@dataclass(frozen=True)
class SpeechConfig:
    """What :func:`build_speech` synthesises (the cache key is a hash of these fields).

    Attributes:
        voices: espeak-ng voice names, one speaker each.
        utterances_per_speaker: Training utterances per speaker.
        test_per_speaker: Held-out utterances per speaker (sentences never used in training).
        rate_range: Speaking rate in words per minute, drawn uniformly per utterance (the same
            range for every voice, so durations alone do not identify the speaker).
        pitch_jitter: Base pitch (espeak's 0–100 scale, default 50) varies by ± this.
        n_mels: Mel bands per frame.
        n_fft, hop: STFT window/FFT size and hop, in samples at 22 050 Hz.
        max_frames: Utterances are truncated to this many frames.
        seed: Seed of the sentence, speaker order, rate and pitch draws.
    """

    voices: tuple[str, ...] = DEFAULT_VOICES
    utterances_per_speaker: int = 48
    test_per_speaker: int = 10
    rate_range: tuple[int, int] = (150, 200)
    pitch_jitter: int = 8
    n_mels: int = 20
    n_fft: int = 1024
    hop: int = 768
    max_frames: int = 64
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Utterance:
    """One utterance.

    Attributes:
        frames: ``T x n_mels`` standardised log-mel frames.
        phones: ``T`` phoneme label ids (frame-level alignment).
        speaker: Speaker index into :attr:`SpeechData.voices`.
        text: The sentence.
    """

    frames: Tensor
    phones: Tensor
    speaker: int
    text: str

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class SpeechData:
    """The synthesised corpus: train/test utterances, the phoneme inventory, normalisation.

    Attributes:
        config: What was synthesised.
        train, test: Utterances (test sentences never occur in training).
        phonemes: Label id → name; the first three are :data:`RESERVED`, then espeak's
            mnemonics seen in the training split, sorted.
        mean, std: ``n_mels`` per-band statistics of the raw log-mel of the training split
            (``frames = (raw − mean) / std``).
        build_seconds: Synthesis time.
        sample_rate: espeak-ng's output rate (Hz).
    """

    config: SpeechConfig
    train: list[Utterance]
    test: list[Utterance]
    phonemes: list[str]
    mean: Tensor
    std: Tensor
    build_seconds: float = 0.0
    sample_rate: int = 22050

    @property
    def voices(self) -> tuple[str, ...]:
        return self.config.voices

    @property
    def n_speakers(self) -> int:
        return len(self.config.voices)

    @property
    def n_mels(self) -> int:
        return self.config.n_mels

    @property
    def n_labels(self) -> int:
        return len(self.phonemes)

    def to_dict(self) -> dict[str, Any]:
        def pack(us: list[Utterance]) -> dict[str, Any]:
            return {
                "frames": torch.cat([u.frames for u in us]) if us else torch.zeros(0),
                "phones": torch.cat([u.phones for u in us]) if us else torch.zeros(0),
                "lengths": torch.tensor([len(u) for u in us], dtype=torch.long),
                "speakers": torch.tensor([u.speaker for u in us], dtype=torch.long),
                "texts": [u.text for u in us],
            }

        return {
            "config": dataclasses.asdict(self.config),
            "train": pack(self.train),
            "test": pack(self.test),
            "phonemes": list(self.phonemes),
            "mean": self.mean,
            "std": self.std,
            "build_seconds": self.build_seconds,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeechData:
        cfg = d["config"]
        cfg = SpeechConfig(**{**cfg, "voices": tuple(cfg["voices"]),
                              "rate_range": tuple(cfg["rate_range"])})  # fmt: skip

        def unpack(p: dict[str, Any]) -> list[Utterance]:
            lengths = p["lengths"].tolist()
            frames = torch.split(p["frames"], lengths) if lengths else []
            phones = torch.split(p["phones"], lengths) if lengths else []
            return [
                Utterance(f.clone(), ph.clone(), int(s), t)
                for f, ph, s, t in zip(
                    frames, phones, p["speakers"].tolist(), p["texts"], strict=True
                )
            ]

        return cls(cfg, unpack(d["train"]), unpack(d["test"]), list(d["phonemes"]), d["mean"],
                   d["std"], float(d.get("build_seconds", 0.0)),
                   int(d.get("sample_rate", 22050)))  # fmt: skip


# --------------------------------------------------------------------------------------------
# espeak-ng through ctypes
# --------------------------------------------------------------------------------------------

_EVENT_WORD, _EVENT_PHONEME = 1, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_POS_CHARACTER = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of ``speak_lib.h``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Espeak:
    """In-process espeak-ng synthesiser returning audio and phoneme start samples.

    One instance per process (``libespeak-ng`` keeps global state); use :func:`espeak`.

    Raises:
        RuntimeError: ``libespeak-ng`` is not installed (``apt-get install espeak-ng``).
    """

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as e:
            raise RuntimeError(
                "libespeak-ng is not installed: run `apt-get install -y espeak-ng` "
                "(or `make espeak`) to synthesise the Voicebox speech data"
            ) from e
        self.sample_rate = int(
            self.lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS
            )
        )
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed (espeak-ng-data missing?)")
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._phonemes.append((ev.id.string.decode("ascii", "replace"), int(ev.sample)))
            i += 1
        return 0

    def synth(
        self, text: str, voice: str, *, rate: int = 175, pitch: int = 50
    ) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Speak ``text`` with ``voice``.

        Returns:
            ``(audio, phonemes)``: float32 samples in ``[-1, 1]`` and ``[(mnemonic, start
            sample), ...]`` in order.
        """
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValidationError(f"espeak-ng has no voice {voice!r}", field="voices")
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._chunks, self._phonemes = [], []
            buf = text.encode()
            self.lib.espeak_Synth(buf, len(buf) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return (audio.astype(np.float32) / 32768.0), list(self._phonemes)


_ESPEAK: Espeak | None = None


def espeak() -> Espeak:
    """The process-wide :class:`Espeak`."""
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = Espeak()
    return _ESPEAK


# --------------------------------------------------------------------------------------------
# Features and alignment
# --------------------------------------------------------------------------------------------


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float = 60.0, fmax: float = 8000.0
) -> Tensor:
    """Triangular filters on the HTK mel scale ``m = 2595·log10(1 + f/700)``.

    Returns:
        ``n_mels x (n_fft // 2 + 1)`` weights (each filter peaks at 1).
    """

    def hz_to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m: Tensor) -> Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fmax = min(fmax, sample_rate / 2)
    mels = torch.linspace(float(hz_to_mel(torch.tensor(fmin))),
                          float(hz_to_mel(torch.tensor(fmax))), n_mels + 2)  # fmt: skip
    edges = mel_to_hz(mels)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def log_mel(audio: np.ndarray | Tensor, fbank: Tensor, n_fft: int, hop: int) -> Tensor:
    """``log(mel power + 1e-5)`` frames of a waveform: ``T x n_mels`` with ``T = len // hop + 1``."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      center=True, return_complex=True)  # fmt: skip
    power = spec.abs() ** 2  # (n_fft/2+1) x T
    return torch.log(fbank @ power + 1e-5).T


def align_frames(
    phonemes: list[tuple[str, int]], n_frames: int, hop: int, index: dict[str, int]
) -> Tensor:
    """Frame labels by the alignment rule of the module docstring.

    Args:
        phonemes: ``[(mnemonic, start sample)]`` from espeak, in order.
        n_frames: Number of frames ``T``.
        hop: Frame hop in samples (frame ``f`` is centred on sample ``f·hop``).
        index: Mnemonic → label id (unknown mnemonics get :data:`UNKNOWN`).

    Returns:
        ``T`` label ids (long).
    """
    labels = torch.full((n_frames,), SILENCE, dtype=torch.long)
    starts = [s for _, s in phonemes]
    for f in range(n_frames):
        c = f * hop
        k = int(np.searchsorted(starts, c, side="right")) - 1
        if k >= 0:
            labels[f] = _label(phonemes[k][0], index)
    return labels


def _is_pause(mnemonic: str) -> bool:
    return mnemonic.startswith("_") or mnemonic.strip() == ""


def _label(mnemonic: str, index: dict[str, int]) -> int:
    return SILENCE if _is_pause(mnemonic) else index.get(mnemonic, UNKNOWN)


def sentences(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct short sentences (two to five words) from the module's small grammar."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        form = rng.randrange(4)
        det, adj, noun = rng.choice(_DETERMINERS), rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
        verb, adv = rng.choice(_VERBS), rng.choice(_ADVERBS)
        words = [
            [noun, verb],
            [det, noun, verb],
            [det, adj, noun, verb],
            [noun, verb, adv],
        ][form]
        s = " ".join(words)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def build_speech(config: SpeechConfig) -> SpeechData:
    """Synthesise the corpus of ``config`` (see the module docstring). Seconds for ~300 utterances."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small STFTs: extra threads only spin on shared cores
    try:
        data = _build(config)
    finally:
        torch.set_num_threads(threads)
    data.build_seconds = time.perf_counter() - t0
    return data


def _build(config: SpeechConfig) -> SpeechData:
    eng = espeak()
    rng = random.Random(config.seed)
    n_spk = len(config.voices)
    n_train, n_test = config.utterances_per_speaker, config.test_per_speaker
    texts = sentences(n_spk * (n_train + n_test), rng)
    train_texts, test_texts = texts[: n_spk * n_train], texts[n_spk * n_train :]
    fbank = mel_filterbank(config.n_mels, config.n_fft, eng.sample_rate)

    raw: list[tuple[str, Tensor, list[tuple[str, int]], int, str]] = []
    for split, split_texts in (("train", train_texts), ("test", test_texts)):
        for i, text in enumerate(split_texts):
            spk = i % n_spk
            rate = rng.randint(*config.rate_range)
            pitch = 50 + rng.randint(-config.pitch_jitter, config.pitch_jitter)
            audio, phonemes = eng.synth(text, config.voices[spk], rate=rate, pitch=pitch)
            mel = log_mel(audio, fbank, config.n_fft, config.hop)[: config.max_frames]
            raw.append((split, mel, phonemes, spk, text))

    inventory = sorted({p for s, _, ph, _, _ in raw if s == "train" for p, _ in ph
                        if not _is_pause(p)})  # fmt: skip
    phonemes = [*RESERVED, *inventory]
    index = {p: i for i, p in enumerate(phonemes)}
    train_mels = torch.cat([m for s, m, *_ in raw if s == "train"])
    mean, std = train_mels.mean(0), train_mels.std(0).clamp_min(1e-3)
    data = SpeechData(config, [], [], phonemes, mean, std, sample_rate=eng.sample_rate)
    for split, mel, ph, spk, text in raw:
        u = Utterance((mel - mean) / std, align_frames(ph, len(mel), config.hop, index), spk, text)
        (data.train if split == "train" else data.test).append(u)
    return data


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$ASSAY_GENERATIVE_CACHE``, else ``<tmp>/assay-voicebox``."""
    d = cache_dir or os.environ.get("ASSAY_GENERATIVE_CACHE") or ""
    return Path(d) if d else Path(tempfile.gettempdir()) / "assay-voicebox"


_MEMO: dict[str, SpeechData] = {}


def load_speech(
    config: SpeechConfig | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> SpeechData:
    """The corpus of ``config``: from the process memo, the disk cache, or built (and cached).

    Args:
        config: What to synthesise (defaults: :class:`SpeechConfig`).
        cache_dir: Directory of ``speech-<key>.pt`` (see :func:`default_cache_dir`).
    """
    config = config or SpeechConfig()
    path = default_cache_dir(cache_dir) / f"speech-{config.key()}.pt"
    memo_key = f"{path}"
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    if path.exists():
        data = SpeechData.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        data = build_speech(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(data.to_dict(), tmp)
        os.replace(tmp, path)  # atomic: parallel jobs never read half a file
    _MEMO[memo_key] = data
    return data


def describe(data: SpeechData) -> dict[str, Any]:
    """Summary statistics of a corpus (what the data script prints)."""
    lengths = [len(u) for u in data.train + data.test]
    frame_s = data.config.hop / data.sample_rate
    voiced = torch.cat([u.phones for u in data.train]) > SILENCE
    return {
        "speakers": list(data.voices),
        "train_utterances": len(data.train),
        "test_utterances": len(data.test),
        "phonemes": data.n_labels - len(RESERVED),
        "frames_mean": float(np.mean(lengths)),
        "frames_max": int(np.max(lengths)),
        "frame_ms": round(1000 * frame_s, 2),
        "seconds_total": round(sum(lengths) * frame_s, 1),
        "voiced_fraction": float(voiced.float().mean()),
        "build_seconds": round(data.build_seconds, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m assay.generative.voicebox.data --out DIR``: build (or find) the corpus."""
    ap = argparse.ArgumentParser(description="Synthesise the Voicebox toy speech corpus.")
    ap.add_argument("--out", default="", help="cache directory (default: see default_cache_dir)")
    ap.add_argument("--utterances-per-speaker", type=int, default=48)
    ap.add_argument("--test-per-speaker", type=int, default=10)
    ap.add_argument("--voices", default=",".join(DEFAULT_VOICES), help="comma-separated")
    ap.add_argument("--n-mels", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cfg = SpeechConfig(
        voices=tuple(v for v in args.voices.split(",") if v),
        utterances_per_speaker=args.utterances_per_speaker,
        test_per_speaker=args.test_per_speaker,
        n_mels=args.n_mels,
        seed=args.seed,
    )
    data = load_speech(cfg, args.out or None)
    summary = {"path": str(default_cache_dir(args.out or None) / f"speech-{cfg.key()}.pt"),
               **describe(data)}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":  # pragma: no cover - exercised through main() in the tests
    main(sys.argv[1:])
