"""Utility of a synthetic table against held-out real rows (Sablayrolles et al. 2023, Sec. 4).

All metrics compare tables in the schema's discretised space (per-column local codes from
:meth:`RowCodec.to_codes`), so a model is never rewarded for detail the schema cannot express:

* k-way marginal total-variation distance: for every set of ``k`` columns, ``TV = ½ Σ |p − p̂|``
  over the joint histogram of those columns; we report the mean (and max) over all sets.
* Train-on-synthetic / test-on-real (TSTR): a multinomial logistic regression on the one-hot
  codes of the other columns, fitted on synthetic rows, accuracy on real held-out rows. The
  same classifier fitted on real training rows (TRTR) and the majority-class rate bracket it.
* Held-out NLL (nats per row) lives with each model (:func:`.model.heldout_nll`,
  :meth:`.baseline.MSTSynthesizer.nll`).

Example:
    >>> tv = marginal_tv(real_codes, synth_codes, codec.sizes, k=2)     # doctest: +SKIP
    >>> tv["mean"]
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

from assay.platform.errors import ValidationError


def _hist(codes: np.ndarray, cols: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    idx = np.zeros(codes.shape[0], dtype=np.int64)
    total = 1
    for c in cols:
        idx = idx * sizes[c] + codes[:, c]
        total *= sizes[c]
    h = np.bincount(idx, minlength=total).astype(float)
    return h / max(h.sum(), 1.0)


def marginal_tv(
    real: np.ndarray, synth: np.ndarray, sizes: Sequence[int], k: int = 1
) -> dict[str, float]:
    """Mean and max total-variation distance over all ``k``-way marginals.

    Args:
        real: ``n x c`` codes of the real rows.
        synth: ``m x c`` codes of the synthetic rows.
        sizes: Number of codes per column.
        k: Marginal order (1 or 2 in practice).

    Returns:
        ``{"mean": ..., "max": ...}``, each in ``[0, 1]``.
    """
    if real.shape[1] != synth.shape[1] or real.shape[1] != len(sizes):
        raise ValidationError("real, synth and sizes disagree on the number of columns")
    tvs = [
        0.5 * float(np.abs(_hist(real, cols, sizes) - _hist(synth, cols, sizes)).sum())
        for cols in itertools.combinations(range(len(sizes)), k)
    ]
    if not tvs:
        return {"mean": 0.0, "max": 0.0}
    return {"mean": float(np.mean(tvs)), "max": float(np.max(tvs))}


def _one_hot(codes: np.ndarray, sizes: Sequence[int], skip: int) -> np.ndarray:
    blocks = [np.eye(s, dtype=np.float32)[codes[:, j]] for j, s in enumerate(sizes) if j != skip]
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((codes.shape[0], 0), np.float32)


def _fit_predict(
    train: np.ndarray, test: np.ndarray, sizes: Sequence[int], target: int
) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    y = train[:, target]
    if len(np.unique(y)) < 2:  # a synthetic table with one class predicts that class
        return np.full(test.shape[0], y[0] if len(y) else 0)
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(max_iter=300, C=1.0)
    # one BLAS thread: on a shared small machine, threaded BLAS in lbfgs is ~100x slower
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence notices on tiny tables
        clf.fit(_one_hot(train, sizes, target), y)
        return clf.predict(_one_hot(test, sizes, target))


def tstr_accuracy(
    synth: np.ndarray,
    real_train: np.ndarray,
    real_test: np.ndarray,
    sizes: Sequence[int],
    target: int,
) -> dict[str, float]:
    """Train-on-synthetic / test-on-real accuracy for column ``target``.

    Args:
        synth: ``m x c`` synthetic codes (training set of the TSTR classifier).
        real_train: ``n x c`` real training codes (for the TRTR reference).
        real_test: ``n' x c`` real held-out codes (test set of both).
        sizes: Codes per column.
        target: Index of the column to predict.

    Returns:
        ``{"tstr": acc, "trtr": acc_on_real_training, "majority": majority_rate}``.
    """
    y = real_test[:, target]
    majority = float(np.mean(y == np.bincount(real_train[:, target]).argmax()))
    return {
        "tstr": float(np.mean(_fit_predict(synth, real_test, sizes, target) == y)),
        "trtr": float(np.mean(_fit_predict(real_train, real_test, sizes, target) == y)),
        "majority": majority,
    }
