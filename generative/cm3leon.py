"""CM3Leon at toy scale: a retrieval-augmented decoder-only model over text and image tokens.

Implements the recipe of Yu et al., *Scaling Autoregressive Multi-Modal Models: Pretraining and
Instruction Tuning* (CM3Leon, 2023) on scikit-learn's 8×8 digits, small enough for a CPU:

**Tokens.** An image is 16 tokens: the 4×4 grid of 2×2 pixel patches, each replaced by the
index of its nearest centre in a k-means codebook fitted on the training patches
(:class:`DigitsCorpus`; decoding puts the centres back). A caption is three words computed from
the image — the digit's name, its stroke thickness (ink mass tertile) and its slant (tertile of
the ink-weighted regression slope of column on row). One vocabulary holds special tokens, words
and image codes; a *document* is ``<txt> w w w <img> c₁ … c₁₆ <eod>`` (22 tokens).

**Causally masked objective (CM3).** With probability ``cm3_prob`` a random span ``[a, b)`` of
the image tokens is cut out, replaced by ``<mask>`` and appended after ``<infill>``:
``<txt> w w w <img> c[:a] <mask> c[b:] <infill> c[a:b] <eod>``, so one left-to-right model both
continues and infills. Infilling the lower half is the span ``[8, 16)``.

**Retrieval-augmented pre-training.** A dense retriever — a dual encoder trained here with a
symmetric InfoNCE loss on (caption, image) pairs (:class:`DualEncoder`; we train our own rather
than take fixed PCA features because text and image queries must land in *one* space: at
text→image time only the caption exists) — embeds a multimodal document as the normalised mean
of its text and image embeddings, as CM3Leon does with CLIP. For each document, ``k`` documents
of the memory bank (the training split) are retrieved by maximal marginal relevance
(:func:`mmr_retrieve`: relevant to the query, not redundant with each other; the query itself
and near-duplicates above ``dup_threshold`` are skipped, as the paper skips candidates too close
to the query) and prepended; the loss is taken on the main document only.

**Multi-task SFT.** Instruction-style tasks on the same model (:data:`SFT_TASKS`): text→image
(retrieval by the caption's text embedding), image→text (retrieval by the image embedding),
infill the lower half, and caption-free text→image for guidance; loss on the response tokens.

**Decoding** (:func:`generate_images`). Plain sampling; classifier-free guidance
``logits = l_u + w (l_c − l_u)`` with the unconditional stream being the document with the
caption replaced by ``<null>`` tokens and no retrieved documents (trained with probability
``uncond_prob``); and the paper's self-contained *TopK contrastive decoding* (CD-K): with the
conditional model as expert and the unconditional one as amateur, the candidates are
``V = {t : p_c(t) ≥ α · kmax(k, p_c)}`` — α times the ``k``-th largest conditional
probability (``k = 1`` is Li et al.'s original rule ``α · max p``) — each scored
``log p_c(t) − log p_u(t)``; we sample the next token from ``softmax(score / τ)`` over ``V``
(``τ → 0``: the greedy arg-max of the original CD). Every method draws image tokens only.

The job entry point is :func:`assay.generative.workloads.cm3leon.run`.

Example:
    >>> corpus = DigitsCorpus.build(codebook_size=16, seed=0)  # doctest: +SKIP
    >>> corpus.train.tokens.shape  # doctest: +SKIP
    torch.Size([1437, 16])

This module imports torch, numpy, scikit-learn and :mod:`assay.generative` helpers only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import assay
from assay.platform.errors import ValidationError

# --------------------------------------------------------------------------------------------
# Vocabulary and documents
# --------------------------------------------------------------------------------------------

SPECIALS = ["<pad>", "<bos>", "<txt>", "<img>", "<eod>", "<mask>", "<infill>", "<null>"]
PAD, BOS, TXT, IMG, EOD, MASK, INFILL, NULL = range(len(SPECIALS))
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
THICKNESS = ["thin", "medium", "thick"]
SLANT = ["left-slanted", "upright", "right-slanted"]
WORDS = DIGIT_NAMES + THICKNESS + SLANT
#: First word id; words occupy ``[WORD0, WORD0 + len(WORDS))``.
WORD0 = len(SPECIALS)
#: First image-code id; codes occupy ``[CODE0, CODE0 + codebook_size)``.
CODE0 = WORD0 + len(WORDS)
#: Image tokens per image (4×4 patches of 2×2 pixels) and caption words per caption.
IMAGE_TOKENS, CAPTION_WORDS = 16, 3
#: Length of a memory-bank document ``<txt> w w w <img> c×16 <eod>``.
DOC_LEN = 2 + CAPTION_WORDS + IMAGE_TOKENS + 1
#: Length of the main-document slot (CM3 adds ``<mask>`` and ``<infill>``).
MAIN_LEN = DOC_LEN + 2
#: Tasks of the multi-task SFT stage and their default mixture weights.
SFT_TASKS = {"t2i": 0.35, "i2t": 0.3, "infill": 0.15, "uncond": 0.2}


def vocab_size(codebook_size: int) -> int:
    """Number of token ids for a codebook of ``codebook_size`` image codes."""
    return CODE0 + codebook_size


def _patches(images: np.ndarray) -> np.ndarray:
    """``n x 8 x 8`` → ``n x 16 x 4`` (2×2 patches in raster order)."""
    n = images.shape[0]
    p = images.reshape(n, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4)
    return p.reshape(n, 16, 4)


def _unpatch(patches: np.ndarray | Tensor) -> Tensor:
    """``n x 16 x 4`` → ``n x 8 x 8``."""
    p = torch.as_tensor(patches, dtype=torch.float32)
    n = p.shape[0]
    return p.reshape(n, 4, 4, 2, 2).permute(0, 1, 3, 2, 4).reshape(n, 8, 8)


def image_attributes(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ink mass and slant of ``n x 8 x 8`` images with pixel values in ``[0, 16]``.

    Slant is the ink-weighted least-squares slope of column on row (rows grow downwards), so a
    digit whose top leans right has a negative slope.
    """
    w = images.astype(np.float64)
    mass = w.sum(axis=(1, 2))
    r, c = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    tot = mass + 1e-9
    mr = (w * r).sum(axis=(1, 2)) / tot
    mc = (w * c).sum(axis=(1, 2)) / tot
    cov = (w * (r - mr[:, None, None]) * (c - mc[:, None, None])).sum(axis=(1, 2)) / tot
    var = (w * (r - mr[:, None, None]) ** 2).sum(axis=(1, 2)) / tot
    return mass, cov / (var + 1e-9)


@dataclass
class Split:
    """One split of the corpus.

    Args:
        images: ``n x 8 x 8`` pixel values in ``[0, 16]`` (float32).
        labels: ``n`` digit classes.
        tokens: ``n x 16`` image-code indices (``0 … K-1``, not yet offset by :data:`CODE0`).
        captions: ``n x 3`` word indices into :data:`WORDS`.
    """

    images: Tensor
    labels: Tensor
    tokens: Tensor
    captions: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DigitsCorpus:
    """The digits as caption+image documents: codebook, captions, train/test splits.

    Args:
        codebook: ``K x 4`` k-means centres of 2×2 patches (pixel values in ``[0, 16]``).
        train: The training split (also the retrieval memory bank).
        test: The held-out split.
        thresholds: Tertile cut points (``mass``, ``slant``) fitted on the training split.
    """

    codebook: Tensor
    train: Split
    test: Split
    thresholds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    @classmethod
    def build(cls, codebook_size: int = 32, seed: int = 0) -> DigitsCorpus:
        """Fit the codebook and the caption thresholds on the digits' training split.

        The split is :func:`assay.generative.data.load_digits_tensor`'s (seed 0), the same
        the digits classifier is trained on, so its test split is held out from both.
        """
        from sklearn.cluster import KMeans

        from assay.generative.data import load_digits_tensor

        if not 2 <= codebook_size <= 512:
            raise ValidationError("codebook_size must be in [2, 512]", field="codebook_size")
        parts = {}
        for name in ("train", "test"):
            x, y = load_digits_tensor(name)
            parts[name] = ((x[:, 0] + 1) / 2 * 16).numpy().astype(np.float32), y
        tr = parts["train"][0]
        km = KMeans(n_clusters=codebook_size, n_init=2, random_state=seed)
        km.fit(_patches(tr).reshape(-1, 4))
        centres = km.cluster_centers_.astype(np.float32)
        mass, slant = image_attributes(tr)
        th = {
            "mass": np.quantile(mass, [1 / 3, 2 / 3]).tolist(),
            "slant": np.quantile(slant, [1 / 3, 2 / 3]).tolist(),
        }
        splits = {}
        for name, (img, y) in parts.items():
            codes = km.predict(_patches(img).reshape(-1, 4)).reshape(-1, 16)
            m, s = image_attributes(img)
            thick = np.searchsorted(th["mass"], m)
            # negative slope: the top leans right -> "right-slanted" (index 2)
            sl = 2 - np.searchsorted(th["slant"], s)
            cap = np.stack(
                [y.numpy(), len(DIGIT_NAMES) + thick, len(DIGIT_NAMES) + len(THICKNESS) + sl],
                axis=1,
            )
            splits[name] = Split(
                torch.tensor(img),
                y.clone(),
                torch.tensor(codes, dtype=torch.long),
                torch.tensor(cap, dtype=torch.long),
            )
        return cls(torch.tensor(centres), splits["train"], splits["test"], th)

    def decode(self, codes: Tensor) -> Tensor:
        """Image-code indices ``n x 16`` (``0 … K-1``) → images ``n x 8 x 8`` in ``[0, 16]``."""
        codes = codes.clamp(0, self.codebook_size - 1).cpu()
        return _unpatch(self.codebook[codes])

    def caption_text(self, caption: Sequence[int]) -> str:
        """Word indices → ``"three thick upright"``."""
        return " ".join(WORDS[int(i)] for i in caption)


_CORPORA: dict[tuple[int, int], DigitsCorpus] = {}


def load_corpus(codebook_size: int = 32, seed: int = 0) -> DigitsCorpus:
    """:meth:`DigitsCorpus.build`, memoised per process (trials and tests share it)."""
    key = (codebook_size, seed)
    if key not in _CORPORA:
        _CORPORA[key] = DigitsCorpus.build(codebook_size, seed)
    return _CORPORA[key]


def to_unit_range(images: Tensor) -> Tensor:
    """``n x 8 x 8`` in ``[0, 16]`` → ``n x 1 x 8 x 8`` in ``[-1, 1]`` (the classifier's input)."""
    return (images / 16.0 * 2 - 1).reshape(-1, 1, 8, 8)


# --------------------------------------------------------------------------------------------
# Dense retriever
# --------------------------------------------------------------------------------------------


class DualEncoder(nn.Module):
    """CLIP-style dual encoder: captions and images to one ``dim``-d unit sphere.

    Text: mean of learned word embeddings, then a linear map. Image: an MLP on the 64 pixels.

    Args:
        dim: Embedding dimension.
        hidden: Image MLP width.
    """

    def __init__(self, dim: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(len(WORDS), hidden, mode="mean")
        self.text_out = nn.Linear(hidden, dim)
        self.image = nn.Sequential(nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def embed_text(self, captions: Tensor) -> Tensor:
        """``n x 3`` word indices → ``n x dim`` unit vectors."""
        return F.normalize(self.text_out(self.words(captions)), dim=-1)

    def embed_image(self, images: Tensor) -> Tensor:
        """``n x 8 x 8`` images in ``[0, 16]`` → ``n x dim`` unit vectors."""
        return F.normalize(self.image(images.reshape(len(images), 64) / 16.0), dim=-1)

    def embed_document(self, captions: Tensor, images: Tensor) -> Tensor:
        """A caption+image document: the normalised mean of both embeddings."""
        return F.normalize(self.embed_text(captions) + self.embed_image(images), dim=-1)


def train_retriever(
    corpus: DigitsCorpus,
    *,
    steps: int = 300,
    batch_size: int = 256,
    lr: float = 3e-3,
    temperature: float = 0.1,
    dim: int = 32,
    seed: int = 0,
) -> DualEncoder:
    """Train :class:`DualEncoder` on the training split with a symmetric InfoNCE loss.

    Many captions repeat (90 combinations), so every pair in the batch with the same caption
    counts as a positive: the targets are the rows of the caption-equality matrix, normalised.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    enc = DualEncoder(dim)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    tr = corpus.train
    for _ in range(steps):
        idx = torch.randint(0, len(tr), (batch_size,), generator=g)
        cap, img = tr.captions[idx], tr.images[idx]
        logits = enc.embed_text(cap) @ enc.embed_image(img).T / temperature
        same = (cap[:, None, :] == cap[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (
            -(target * logits.log_softmax(1)).sum(1).mean()
            - (target.T * logits.T.log_softmax(1)).sum(1).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return enc.eval()


def mmr_retrieve(
    queries: Tensor,
    bank: Tensor,
    k: int,
    *,
    lam: float = 0.7,
    exclude: Tensor | None = None,
    dup_threshold: float = 0.995,
    candidates: int = 32,
) -> Tensor:
    """Maximal-marginal-relevance retrieval: ``k`` relevant and mutually diverse documents.

    Greedily picks ``argmax_d [λ sim(q, d) − (1 − λ) max_{s ∈ S} sim(d, s)]`` among the
    ``candidates`` most similar documents (cosine similarity of unit embeddings). Candidates
    with ``sim(q, d) > dup_threshold`` (copies of the query) and ``exclude[i]`` (the query's
    own index in the bank, during training) are skipped.

    Args:
        queries: ``n x e`` unit query embeddings.
        bank: ``N x e`` unit document embeddings.
        k: Documents per query (``≤ candidates``).
        lam: Relevance/diversity trade-off ``λ ∈ [0, 1]`` (1: plain nearest neighbours).
        exclude: Optional ``n`` bank indices to skip (``-1``: none).
        dup_threshold: Near-duplicate similarity cut-off.
        candidates: Size of the pre-selected pool.

    Returns:
        ``n x k`` bank indices (most relevant first).
    """
    n = queries.shape[0]
    if k == 0:
        return torch.zeros(n, 0, dtype=torch.long)
    sims = queries @ bank.T
    sims = sims.masked_fill(sims > dup_threshold, -math.inf)
    if exclude is not None:
        rows = torch.arange(n)[exclude >= 0]
        sims[rows, exclude[exclude >= 0]] = -math.inf
    c = min(max(candidates, k), bank.shape[0])
    rel, pool = sims.topk(c, dim=1)  # n x c
    emb = bank[pool]  # n x c x e
    pair = emb @ emb.transpose(1, 2)  # n x c x c
    chosen = torch.zeros(n, k, dtype=torch.long)
    taken = torch.zeros(n, c, dtype=torch.bool)
    redundancy = torch.full((n, c), -math.inf)
    ar = torch.arange(n)
    for j in range(k):
        red = redundancy.clamp_min(0.0) if j else torch.zeros(n, c)
        score = lam * rel - (1 - lam) * red
        score = score.masked_fill(taken | ~torch.isfinite(rel), -math.inf)
        best = score.argmax(1)
        chosen[:, j] = pool[ar, best]
        taken[ar, best] = True
        redundancy = torch.maximum(redundancy, pair[ar, best])
    return chosen


@dataclass
class Retrieval:
    """Precomputed neighbours in the memory bank (the training split) for one split.

    Attributes:
        joint: ``n x k`` neighbours of each document (query: its text+image embedding).
        text: ``n x k`` neighbours of its caption alone (text→image).
        image: ``n x k`` neighbours of its image alone (image→text).
    """

    joint: Tensor
    text: Tensor
    image: Tensor


@torch.no_grad()
def build_retrieval(
    corpus: DigitsCorpus, encoder: DualEncoder, k: int, *, lam: float = 0.7
) -> dict[str, Retrieval]:
    """Neighbours of every train and test document (train: itself excluded)."""
    tr = corpus.train
    bank = encoder.embed_document(tr.captions, tr.images)
    out = {}
    for name, sp in (("train", corpus.train), ("test", corpus.test)):
        ex = torch.arange(len(sp)) if name == "train" else None
        out[name] = Retrieval(
            mmr_retrieve(encoder.embed_document(sp.captions, sp.images), bank, k, lam=lam,
                         exclude=ex),
            mmr_retrieve(encoder.embed_text(sp.captions), bank, k, lam=lam, exclude=ex),
            mmr_retrieve(encoder.embed_image(sp.images), bank, k, lam=lam, exclude=ex),
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------------


def memory_documents(split: Split) -> Tensor:
    """``<txt> w w w <img> c×16 <eod>`` for every document of ``split`` → ``n x 22``."""
    n = len(split)
    return torch.cat(
        [
            torch.full((n, 1), TXT),
            split.captions + WORD0,
            torch.full((n, 1), IMG),
            split.tokens + CODE0,
            torch.full((n, 1), EOD),
        ],
        dim=1,
    )


def main_document(
    task: str, captions: Tensor, codes: Tensor, span: tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """The main document of a task and the positions of its response tokens.

    Layouts (``MAIN_LEN = 24``, right-padded with ``<pad>``):

    * ``"t2i"``: ``<txt> w w w <img> c×16 <eod>`` — response: the image and ``<eod>``;
    * ``"uncond"``: the same with the words replaced by ``<null>``;
    * ``"i2t"``: ``<img> c×16 <txt> w w w <eod>`` — response: the words and ``<eod>``;
    * ``"cm3"``/``"infill"``: ``<txt> w w w <img> c[:a] <mask> c[b:] <infill> c[a:b] <eod>``
      — response: the span and ``<eod>`` (``"infill"`` uses ``a, b = 8, 16``, the lower half;
      ``"cm3"`` takes per-row ``span = (a, b)``).

    Args:
        task: One of the layouts above.
        captions: ``n x 3`` word indices.
        codes: ``n x 16`` image-code indices.
        span: ``(a, b)``, each ``n`` (``"cm3"`` only).

    Returns:
        Tokens ``n x 24`` and a boolean ``n x 24`` mask of response positions.
    """
    n = captions.shape[0]
    words, img = captions + WORD0, codes + CODE0
    col = lambda v: torch.full((n, 1), v, dtype=torch.long)  # noqa: E731
    resp = torch.zeros(n, MAIN_LEN, dtype=torch.bool)
    if task in ("t2i", "uncond"):
        w = words if task == "t2i" else torch.full_like(words, NULL)
        toks = torch.cat([col(TXT), w, col(IMG), img, col(EOD), col(PAD), col(PAD)], 1)
        resp[:, 5:22] = True
    elif task == "i2t":
        toks = torch.cat([col(IMG), img, col(TXT), words, col(EOD), col(PAD), col(PAD)], 1)
        resp[:, 18:22] = True
    elif task in ("cm3", "infill"):
        if task == "infill":
            a = torch.full((n,), 8, dtype=torch.long)
            b = torch.full((n,), 16, dtype=torch.long)
        else:
            if span is None:
                raise ValueError("task 'cm3' needs span=(a, b)")
            a, b = span
        toks = torch.empty(n, MAIN_LEN, dtype=torch.long)
        for i in range(n):
            ai, bi = int(a[i]), int(b[i])
            row = [TXT, *words[i].tolist(), IMG, *img[i, :ai].tolist(), MASK,
                   *img[i, bi:].tolist(), INFILL]  # fmt: skip
            start = len(row)
            row += [*img[i, ai:bi].tolist(), EOD]
            toks[i] = torch.tensor(row)
            resp[i, start:] = True
    else:
        raise ValueError(f"unknown task {task!r}")
    return toks, resp


def assemble(retrieved: Tensor | None, main: Tensor, k: int) -> Tensor:
    """``k`` retrieved documents (``n x j x 22``, ``j ≤ k``, or ``None``) then the main one.

    Missing retrieval slots are ``<pad>`` so every sequence has length ``22 k + 24`` and the
    main document always sits at the same positions.
    """
    n = main.shape[0]
    slots = torch.full((n, k * DOC_LEN), PAD, dtype=torch.long)
    if retrieved is not None and retrieved.shape[1]:
        j = retrieved.shape[1]
        slots[:, (k - j) * DOC_LEN :] = retrieved.reshape(n, j * DOC_LEN)
    return torch.cat([slots, main], dim=1)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        shape = (b, t, self.heads, c // self.heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TokenTransformer(nn.Module):
    """Decoder-only pre-LayerNorm transformer with learned absolute positions.

    Args:
        vocab: Number of token ids.
        max_len: Longest sequence.
        width: Model width (divisible by ``heads``).
        layers: Transformer blocks.
        heads: Attention heads.
        dropout: Residual dropout.

    Example:
        >>> m = TokenTransformer(vocab=40, max_len=24, width=32, layers=1, heads=2)
        >>> m(torch.zeros(3, 24, dtype=torch.long)).shape
        torch.Size([3, 24, 40])
    """

    def __init__(
        self,
        vocab: int,
        max_len: int,
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValidationError("width must be divisible by heads", field="width")
        self.vocab, self.max_len = vocab, max_len
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(max_len, width)
        self.blocks = nn.ModuleList(_Block(width, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied input/output embeddings
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        """``b x t`` token ids → ``b x t x vocab`` next-token logits."""
        t = tokens.shape[1]
        h = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))[None]
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))


def sequence_nll(model: TokenTransformer, tokens: Tensor, targets: Tensor) -> Tensor:
    """Per-sequence summed NLL of the tokens at the ``True`` positions of ``targets``.

    Position ``i`` is predicted from the logits at ``i − 1``.

    Args:
        tokens: ``b x t`` ids.
        targets: ``b x t`` boolean mask of the positions to score.

    Returns:
        ``b`` summed negative log-likelihoods (nats).
    """
    logits = model(tokens[:, :-1])
    logp = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return -(logp * targets[:, 1:].to(logp.dtype)).sum(1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """Shared settings of both training stages.

    Args:
        k: Retrieved documents per example (0: no retrieval).
        steps: Optimiser steps.
        batch_size: Main documents per step.
        lr: AdamW learning rate (cosine-decayed to 10%).
        retrieval_dropout: Probability of training an example without its retrieved documents.
        uncond_prob: Probability of a caption-free (``<null>``) example (for guidance).
        cm3_prob: Pre-training: probability of the causally-masked layout.
        report_every: ``assay.report`` period in steps (0: never).
        report_prefix: Metric name prefix of the reports (``"pretrain"``/``"sft"``).
        step_offset: Added to the reported step (the SFT stage continues the count).
        max_seconds: Stop early after this much wall time (0: no limit).
    """

    k: int = 2
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    retrieval_dropout: float = 0.1
    uncond_prob: float = 0.15
    cm3_prob: float = 0.5
    report_every: int = 0
    report_prefix: str = "pretrain"
    step_offset: int = 0
    max_seconds: float = 0.0


def _retrieved_docs(bank_docs: Tensor, neighbours: Tensor, idx: Tensor, k: int) -> Tensor:
    return bank_docs[neighbours[idx, :k]] if k else torch.zeros(len(idx), 0, DOC_LEN).long()


def pretraining_batch(
    corpus: DigitsCorpus,
    retrieval: Retrieval | None,
    idx: Tensor,
    s: TrainSettings,
    g: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """A retrieval-augmented pre-training batch of training documents ``idx``.

    Each document is, with probability ``uncond_prob``, caption-free with no retrieval;
    otherwise in the CM3 layout with probability ``cm3_prob`` (a random image span of 1–8
    tokens moved to the end), else plain; its ``k`` neighbours (joint query) are prepended
    unless dropped with probability ``retrieval_dropout``. The loss covers the whole main
    document but its first token.
    """
    sp, n = corpus.train, len(idx)
    bank = memory_documents(corpus.train)
    u = torch.rand(n, 3, generator=g)
    uncond, cm3 = u[:, 0] < s.uncond_prob, u[:, 1] < s.cm3_prob
    keep_ret = (u[:, 2] >= s.retrieval_dropout) & ~uncond
    main = torch.empty(n, MAIN_LEN, dtype=torch.long)
    length = torch.randint(1, 9, (n,), generator=g)
    start = (torch.rand(n, generator=g) * (17 - length)).long()
    for task, rows in (("uncond", uncond), ("cm3", cm3 & ~uncond), ("t2i", ~cm3 & ~uncond)):
        if rows.any():
            r = rows.nonzero()[:, 0]
            span = (start[r], start[r] + length[r]) if task == "cm3" else None
            main[r] = main_document(task, sp.captions[idx[r]], sp.tokens[idx[r]], span)[0]
    targets = main != PAD
    targets[:, 0] = False
    ret = None
    if retrieval is not None and s.k:
        ret = _retrieved_docs(bank, retrieval.joint, idx, s.k)
        ret = torch.where(keep_ret[:, None, None], ret, torch.full_like(ret, PAD))
    tokens = assemble(ret, main, s.k)
    pad = torch.zeros(n, s.k * DOC_LEN, dtype=torch.bool)
    return tokens, torch.cat([pad, targets], 1)


def sft_batch(
    corpus: DigitsCorpus,
    retrieval: Retrieval | None,
    idx: Tensor,
    s: TrainSettings,
    g: torch.Generator,
    mixture: dict[str, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """A multi-task SFT batch: each example one of :data:`SFT_TASKS` (by ``mixture``).

    Text→image and infilling retrieve by the caption, image→text by the image; caption-free
    examples have no retrieval; retrieval is dropped with probability ``retrieval_dropout``.
    The loss covers the response tokens only.
    """
    mixture = mixture or SFT_TASKS
    names = list(mixture)
    probs = torch.tensor([mixture[t] for t in names], dtype=torch.float)
    choice = torch.multinomial(probs, len(idx), replacement=True, generator=g)
    sp, n = corpus.train, len(idx)
    bank = memory_documents(corpus.train)
    main = torch.empty(n, MAIN_LEN, dtype=torch.long)
    resp = torch.empty(n, MAIN_LEN, dtype=torch.bool)
    ret = torch.full((n, s.k, DOC_LEN), PAD, dtype=torch.long)
    drop = torch.rand(n, generator=g) < s.retrieval_dropout
    for j, task in enumerate(names):
        r = (choice == j).nonzero()[:, 0]
        if not len(r):
            continue
        main[r], resp[r] = main_document(task, sp.captions[idx[r]], sp.tokens[idx[r]])
        if retrieval is not None and s.k and task != "uncond":
            nb = retrieval.image if task == "i2t" else retrieval.text
            ret[r] = _retrieved_docs(bank, nb, idx[r], s.k)
    ret[drop] = PAD
    tokens = assemble(ret if s.k else None, main, s.k)
    pad = torch.zeros(n, s.k * DOC_LEN, dtype=torch.bool)
    return tokens, torch.cat([pad, resp], 1)


def train_stage(
    model: TokenTransformer,
    make_batch: Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]],
    n_docs: int,
    s: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ``model`` in place on batches from ``make_batch(idx, generator)``.

    AdamW (weight decay 0.01), cosine decay to 10% of ``lr``, gradient-norm clipping at 1.
    The loss is the mean NLL per scored token.

    Returns:
        The loss curve.
    """
    import time

    g = generator or torch.Generator().manual_seed(0)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(s.steps, 1), eta_min=0.1 * s.lr)
    t_end = time.perf_counter() + s.max_seconds if s.max_seconds > 0 else None
    losses: list[float] = []
    for step in range(s.steps):
        idx = torch.randint(0, n_docs, (s.batch_size,), generator=g)
        tokens, targets = make_batch(idx, g)
        tokens, targets = tokens.to(device), targets.to(device)
        nll = sequence_nll(model, tokens, targets)
        loss = nll.sum() / targets[:, 1:].sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if s.report_every and (step + 1) % s.report_every == 0:
            window = losses[-s.report_every :]
            assay.report(
                step=s.step_offset + step + 1,
                **{f"{s.report_prefix}_loss": sum(window) / len(window)},
            )
        if t_end is not None and time.perf_counter() > t_end:
            break
    model.eval()
    return losses


def new_model(
    codebook_size: int, k: int, *, width: int = 64, layers: int = 2, heads: int = 4
) -> TokenTransformer:
    """A :class:`TokenTransformer` sized for ``k`` retrieved documents plus the main one."""
    return TokenTransformer(vocab_size(codebook_size), k * DOC_LEN + MAIN_LEN, width, layers,
                            heads)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Evaluation and decoding
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def heldout_nll(
    model: TokenTransformer,
    corpus: DigitsCorpus,
    retrieval: Retrieval | None,
    k: int,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> float:
    """Mean NLL per token (nats) of the held-out documents ``<txt> w w w <img> c×16 <eod>``
    (all tokens after ``<txt>``), each with its ``k`` retrieved training documents (joint
    query, as in pre-training) when ``retrieval`` is given."""
    te = corpus.test
    bank = memory_documents(corpus.train)
    total, count = 0.0, 0
    for lo in range(0, len(te), batch_size):
        idx = torch.arange(lo, min(lo + batch_size, len(te)))
        main, _ = main_document("t2i", te.captions[idx], te.tokens[idx])
        targets = main != PAD
        targets[:, 0] = False
        ret = _retrieved_docs(bank, retrieval.joint, idx, k) if retrieval is not None else None
        tokens = assemble(ret, main, k)
        full = torch.cat([torch.zeros(len(idx), k * DOC_LEN, dtype=torch.bool), targets], 1)
        total += float(sequence_nll(model, tokens.to(device), full.to(device)).sum())
        count += int(targets.sum())
    return total / count


def _next_logits(model: TokenTransformer, seq: Tensor) -> Tensor:
    return model(seq)[:, -1].float()


def contrastive_topk_scores(
    logp_cond: Tensor, logp_uncond: Tensor, alpha: float, k: int = 1
) -> Tensor:
    """CM3Leon's TopK contrastive decoding (CD-K) scores over the vocabulary.

    ``V = {t : p_c(t) ≥ α · kmax(k, p_c)}`` with ``kmax(k, ·)`` the ``k``-th largest
    probability; ``score(t) = log p_c(t) − log p_u(t)`` on ``V`` and ``−∞`` elsewhere.

    Args:
        logp_cond: ``b x V`` conditional (expert) log-probabilities.
        logp_uncond: ``b x V`` unconditional (amateur) log-probabilities.
        alpha: Plausibility factor ``α ∈ (0, 1]``.
        k: Which largest probability anchors the threshold (1: the maximum).
    """
    kth = logp_cond.topk(k, dim=-1).values[:, -1:]
    keep = logp_cond >= kth + math.log(alpha)
    return torch.where(keep, logp_cond - logp_uncond, torch.full_like(logp_cond, -math.inf))


@dataclass
class Decoding:
    """How image tokens are drawn.

    Args:
        method: ``"plain"`` (sample the conditional), ``"cfg"`` (classifier-free guidance) or
            ``"contrastive"`` (CD-K).
        cfg_weight: Guidance weight ``w`` (``1`` = plain conditional).
        alpha: CD-K plausibility factor ``α``.
        top_k: CD-K's ``k`` (the ``k``-th largest probability sets the threshold).
        temperature: Sampling temperature (CD-K: of ``softmax(score / τ)``; 0: arg-max).
    """

    method: str = "contrastive"
    cfg_weight: float = 3.0
    alpha: float = 0.1
    top_k: int = 1
    temperature: float = 1.0


def _choose(scores: Tensor, temperature: float, g: torch.Generator) -> Tensor:
    if temperature <= 0:
        return scores.argmax(-1)
    probs = torch.softmax(scores / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=g)[:, 0].to(scores.device)


@torch.no_grad()
def generate_images(
    model: TokenTransformer,
    corpus: DigitsCorpus,
    captions: Tensor,
    retrieved: Tensor | None,
    k: int,
    decoding: Decoding,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Text→image: sample 16 image codes per caption.

    The conditional prompt is ``[retrieved docs] <txt> w w w <img>``; the unconditional one
    (CFG's and CD-K's amateur) ``[<pad> slots] <txt> <null>×3 <img>``. Only image-code tokens
    can be drawn.

    Args:
        captions: ``n x 3`` word indices.
        retrieved: ``n x j x 22`` retrieved documents (``None``: none).
        k: Retrieval slots of the model's layout.
        decoding: The method and its settings.

    Returns:
        ``n x 16`` image-code indices (``0 … K-1``).
    """
    g = generator or torch.Generator().manual_seed(0)
    n = captions.shape[0]
    dummy = torch.zeros(n, IMAGE_TOKENS, dtype=torch.long)
    cond = assemble(retrieved, main_document("t2i", captions, dummy)[0], k)[:, : k * DOC_LEN + 5]
    uncond = assemble(None, main_document("uncond", captions, dummy)[0], k)[:, : k * DOC_LEN + 5]
    need_uncond = decoding.method in ("cfg", "contrastive")
    seq = torch.cat([cond, uncond]) if need_uncond else cond
    seq = seq.to(device)
    lo, hi = CODE0, CODE0 + corpus.codebook_size
    out = []
    for _ in range(IMAGE_TOKENS):
        logits = _next_logits(model, seq)[:, lo:hi]
        lc = logits[:n].log_softmax(-1)
        if decoding.method == "plain":
            tok = _choose(lc, decoding.temperature, g)
        elif decoding.method == "cfg":
            lu = logits[n:]
            guided = lu + decoding.cfg_weight * (logits[:n] - lu)
            tok = _choose(guided.log_softmax(-1), decoding.temperature, g)
        elif decoding.method == "contrastive":
            lu = logits[n:].log_softmax(-1)
            kk = min(decoding.top_k, lc.shape[-1])
            tok = _choose(contrastive_topk_scores(lc, lu, decoding.alpha, kk),
                          decoding.temperature, g)  # fmt: skip
        else:
            raise ValueError(f"unknown decoding method {decoding.method!r}")
        out.append(tok)
        step = (tok + lo)[:, None]
        seq = torch.cat([seq, torch.cat([step, step]) if need_uncond else step], dim=1)
    return torch.stack(out, dim=1).cpu()


@torch.no_grad()
def caption_images(
    model: TokenTransformer,
    codes: Tensor,
    retrieved: Tensor | None,
    k: int,
    *,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Image→text: greedy caption words for ``n x 16`` image codes → ``n x 3`` word indices."""
    n = codes.shape[0]
    dummy = torch.zeros(n, CAPTION_WORDS, dtype=torch.long)
    seq = assemble(retrieved, main_document("i2t", dummy, codes)[0], k)[:, : k * DOC_LEN + 18]
    seq = seq.to(device)
    words = []
    for _ in range(CAPTION_WORDS):
        logits = _next_logits(model, seq)[:, WORD0 : WORD0 + len(WORDS)]
        w = logits.argmax(-1)
        words.append(w)
        seq = torch.cat([seq, (w + WORD0)[:, None]], dim=1)
    return torch.stack(words, dim=1).cpu()


@torch.no_grad()
def infill_lower_half(
    model: TokenTransformer,
    captions: Tensor,
    codes: Tensor,
    retrieved: Tensor | None,
    k: int,
    *,
    device: torch.device | str = "cpu",
) -> Tensor:
    """CM3 infilling of the lower half, greedy: ``n x 16`` codes with tokens 8–15 (pixel rows
    4–7) regenerated from ``<txt> w w w <img> c[:8] <mask> <infill>``."""
    prompt_len = 2 + CAPTION_WORDS + 8 + 2  # <txt> w w w <img> c[:8] <mask> <infill>
    main = main_document("infill", captions, codes)[0]
    seq = assemble(retrieved, main, k)[:, : k * DOC_LEN + prompt_len].to(device)
    out = []
    n_codes = model.vocab - CODE0
    for _ in range(8):
        tok = _next_logits(model, seq)[:, CODE0 : CODE0 + n_codes].argmax(-1)
        out.append(tok)
        seq = torch.cat([seq, (tok + CODE0)[:, None]], dim=1)
    return torch.cat([codes[:, :8], torch.stack(out, 1).cpu()], dim=1)


def retrieved_for(
    corpus: DigitsCorpus, neighbours: Tensor | None, idx: Tensor, k: int
) -> Tensor | None:
    """The ``k`` memory documents ``neighbours[idx]`` (``n x k x 22``), or ``None``."""
    if neighbours is None or k == 0:
        return None
    return memory_documents(corpus.train)[neighbours[idx, :k]]


def image_metrics(
    images: Tensor,
    labels: Tensor,
    classifier: nn.Module,
    real_features: Tensor,
) -> dict[str, float]:
    """Digit-classifier accuracy against the prompted ``labels`` and the Fréchet distance to
    real held-out digits in the classifier's 64-d feature space.

    Args:
        images: ``n x 8 x 8`` in ``[0, 16]``.
        labels: ``n`` prompted digit classes.
        classifier: :class:`~assay.generative.rewards.DigitsClassifier`.
        real_features: Its features of the real reference images.
    """
    from assay.generative.metrics import frechet_distance

    dev = next(classifier.parameters()).device
    x = to_unit_range(images).to(dev)
    with torch.no_grad():
        pred = classifier(x).argmax(1).cpu()
        feats = classifier.features(x)
    return {
        "accuracy": float((pred == labels).float().mean()),
        "frechet": frechet_distance(feats, real_features),
    }


def pretrain(
    model: TokenTransformer,
    corpus: DigitsCorpus,
    retrieval: dict[str, Retrieval] | None,
    s: TrainSettings,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> list[float]:
    """Retrieval-augmented pre-training (:func:`pretraining_batch`) of ``model`` in place."""
    ret = retrieval["train"] if retrieval is not None and s.k else None
    return train_stage(
        model, lambda idx, g: pretraining_batch(corpus, ret, idx, s, g), len(corpus.train), s,
        device=device, generator=generator,
    )  # fmt: skip


def finetune(
    model: TokenTransformer,
    corpus: DigitsCorpus,
    retrieval: dict[str, Retrieval] | None,
    s: TrainSettings,
    *,
    mixture: dict[str, float] | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> list[float]:
    """Multi-task SFT (:func:`sft_batch`) of ``model`` in place."""
    ret = retrieval["train"] if retrieval is not None and s.k else None
    return train_stage(
        model, lambda idx, g: sft_batch(corpus, ret, idx, s, g, mixture), len(corpus.train), s,
        device=device, generator=generator,
    )  # fmt: skip


def evaluate(
    model: TokenTransformer,
    corpus: DigitsCorpus,
    retrieval: dict[str, Retrieval] | None,
    k: int,
    classifier: nn.Module,
    decodings: dict[str, Decoding],
    *,
    samples: int = 300,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Score a trained model on the held-out split.

    Metrics: ``heldout_nll`` (nats per token, with the ``k`` retrieved documents) and
    ``heldout_nll_without_retrieved`` (the same model, retrieval slots empty); per decoding
    ``name``: ``accuracy_<name>`` (the digit classifier agrees with the prompted digit on
    ``samples`` text→image samples prompted with held-out captions, retrieval by the caption)
    and ``frechet_<name>`` (Fréchet distance to the real held-out digits in the classifier's
    feature space; the codebook's reconstructions of them score ``frechet_reconstruction``);
    ``caption_accuracy`` (image→text: the digit name of the greedy caption is right, retrieval
    by the image; chance is 0.1), ``caption_accuracy_no_retrieval``, ``caption_exact`` (all
    three words right); ``infill_psnr`` (dB, greedy lower-half infilling vs. the truth, data
    range 2) and ``infill_psnr_mean_fill`` (the lower half of the mean training image, a
    baseline); ``t2i_samples_per_s``.
    """
    import time

    from assay.generative.metrics import psnr

    g = generator or torch.Generator().manual_seed(0)
    te = corpus.test
    ret = retrieval["test"] if retrieval is not None and k else None
    out: dict[str, float] = {"heldout_nll": heldout_nll(model, corpus, ret, k, device=device)}
    if k:
        out["heldout_nll_without_retrieved"] = heldout_nll(model, corpus, None, k, device=device)
    dev = next(classifier.parameters()).device
    with torch.no_grad():
        real = classifier.features(to_unit_range(te.images).to(dev))
    out["frechet_reconstruction"] = image_metrics(
        corpus.decode(te.tokens), te.labels, classifier, real
    )["frechet"]
    idx = torch.arange(samples) % len(te)
    r_text = retrieved_for(corpus, ret.text if ret is not None else None, idx, k)
    t0, drawn = time.perf_counter(), 0
    for name, dec in decodings.items():
        codes = generate_images(model, corpus, te.captions[idx], r_text, k, dec, generator=g,
                                device=device)  # fmt: skip
        drawn += len(idx)
        m = image_metrics(corpus.decode(codes), te.labels[idx], classifier, real)
        out[f"accuracy_{name}"], out[f"frechet_{name}"] = m["accuracy"], m["frechet"]
    out["t2i_samples_per_s"] = drawn / max(time.perf_counter() - t0, 1e-9)
    all_idx = torch.arange(len(te))
    r_img = retrieved_for(corpus, ret.image if ret is not None else None, all_idx, k)
    caps = caption_images(model, te.tokens, r_img, k, device=device)
    out["caption_accuracy"] = float((caps[:, 0] == te.captions[:, 0]).float().mean())
    out["caption_exact"] = float((caps == te.captions).all(1).float().mean())
    if k:
        caps0 = caption_images(model, te.tokens, None, k, device=device)
        out["caption_accuracy_no_retrieval"] = float(
            (caps0[:, 0] == te.captions[:, 0]).float().mean()
        )
    filled = infill_lower_half(model, te.captions, te.tokens, _all_text_retrieved(corpus, ret, k),
                               k, device=device)  # fmt: skip
    lower = torch.zeros(1, 1, 8, 8)
    lower[..., 4:, :] = 1
    truth = to_unit_range(te.images)
    out["infill_psnr"] = float(psnr(to_unit_range(corpus.decode(filled)), truth, lower).mean())
    mean_image = to_unit_range(corpus.train.images.mean(0, keepdim=True)).expand_as(truth)
    out["infill_psnr_mean_fill"] = float(psnr(mean_image, truth, lower).mean())
    return out


def _all_text_retrieved(corpus: DigitsCorpus, ret: Retrieval | None, k: int) -> Tensor | None:
    """Caption-retrieved documents for every held-out document (or ``None``)."""
    if ret is None:
        return None
    return retrieved_for(corpus, ret.text, torch.arange(len(corpus.test)), k)


__all__ = [
    "CODE0",
    "DOC_LEN",
    "MAIN_LEN",
    "SFT_TASKS",
    "WORD0",
    "WORDS",
    "Decoding",
    "DigitsCorpus",
    "DualEncoder",
    "Retrieval",
    "TokenTransformer",
    "TrainSettings",
    "assemble",
    "build_retrieval",
    "caption_images",
    "contrastive_topk_scores",
    "evaluate",
    "finetune",
    "generate_images",
    "heldout_nll",
    "image_metrics",
    "infill_lower_half",
    "load_corpus",
    "main_document",
    "memory_documents",
    "mmr_retrieve",
    "new_model",
    "pretrain",
    "pretraining_batch",
    "retrieved_for",
    "sequence_nll",
    "sft_batch",
    "train_retriever",
    "train_stage",
]
