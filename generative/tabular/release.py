"""One DP synthetic release: fit, charge the ledger, sample, and write the privacy report.

:func:`release_synthetic` is what ``assay synth`` and the REST endpoint
(``POST /api/v1/datasets/{name}/synthetic-releases``) call. Order of
operations, chosen so that a refused release stores nothing and no output escapes unpaid:

1. validate the request and check the ledger has room (cheap pre-flight, before training);
2. fit the mechanism (the DP language model, or the MST baseline) on the private table;
3. charge the ledger — the atomic charge-or-refuse; a refusal raises
   :class:`~assay.platform.errors.PrivacyBudgetExceededError` and nothing is written;
4. only then sample the synthetic rows and build the report (post-processing: free).

The ε charged is the larger of the requested ε and the mechanism's certified ε at the
requested δ (for DP-SGD the PRV accountant's ε after the steps actually run, which the noise
multiplier was chosen to keep below the target; for MST the zCDP conversion of its ρ).

The ledger is accounting and persistence, which ``generative`` does not import: a release
sees only the narrow :class:`ReleaseLedger` protocol, and the caller (service or CLI) passes
in a concrete ledger (:mod:`assay.storage.ledger`, or the store's SQL ledger).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from assay.generative.privacy import finite_json, reconstruction_report
from assay.generative.tabular.schema import RowCodec, TableSchema
from assay.generative.tabular.train import TrainConfig, fit_tabular_lm
from assay.platform.errors import ConflictError, PrivacyBudgetExceededError, ValidationError

METHODS = ("lm", "mst")


class BudgetView(Protocol):
    """What a release reads of a dataset's budget (e.g. ``assay.storage.ledger.BudgetStatus``)."""

    @property
    def epsilon_remaining(self) -> float: ...

    @property
    def delta_remaining(self) -> float: ...

    def allows(self, epsilon: float, delta: float) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


class ChargeView(Protocol):
    """What a release reads of its recorded charge (e.g. ``assay.storage.ledger.Charge``)."""

    @property
    def release_id(self) -> str: ...


class ReleaseLedger(Protocol):
    """The part of a privacy ledger a release uses: read a budget, charge it atomically
    (raising :class:`~assay.platform.errors.PrivacyBudgetExceededError` when it does not fit)."""

    def status(self, dataset: str) -> BudgetView: ...

    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> ChargeView: ...


#: Charge metadata key of the request's hash (the ledger compares it on a same-id charge).
FINGERPRINT_KEY = "request_fingerprint"


def request_fingerprint(
    codes: Any, schema: TableSchema, method: str, epsilon: float, delta: float, n_out: int,
    seed: int, config: TrainConfig | None,
) -> str:  # fmt: skip
    """A hash of everything that shapes a release's DP output."""
    h = hashlib.sha256(np.ascontiguousarray(codes).tobytes())
    extra = [schema.to_dict(), method, float(epsilon), float(delta), n_out, seed,
             dict(config.__dict__) if config is not None else None]  # fmt: skip
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _prior_charge(ledger: Any, dataset: str | None, release_id: str | None) -> Any:
    """The ledger's charge under ``release_id`` (``None``: none, or no id given)."""
    if release_id is None or dataset is None or not hasattr(ledger, "charges"):
        return None
    return next((c for c in ledger.charges(dataset) if c.release_id == release_id), None)


@dataclass
class Release:
    """The synthetic rows and the privacy report of one release."""

    rows: list[dict[str, Any]]
    report: dict[str, Any]


def release_synthetic(
    schema: TableSchema,
    table: Any,
    *,
    epsilon: float,
    delta: float,
    method: str = "lm",
    n_rows: int | None = None,
    config: TrainConfig | None = None,
    ledger: ReleaseLedger | None = None,
    dataset: str | None = None,
    release_id: str | None = None,
    seed: int = 0,
    fingerprint: str | None = None,
) -> Release:
    """Release a DP synthetic copy of ``table``.

    Args:
        schema: The public schema (ranges/categories must not come from ``table``).
        table: The private table (row dicts, dict of columns or DataFrame).
        epsilon: Privacy budget of this release (finite when a ledger is given).
        delta: δ of this release.
        method: ``"lm"`` (DP-SGD language model) or ``"mst"`` (marginal baseline).
        n_rows: Number of synthetic rows (default: as many as the input).
        config: Training hyperparameters for ``"lm"`` (``epsilon``/``delta``/``seed`` are
            overridden by the arguments above).
        ledger: Charged before anything is returned; ``None`` releases without a ledger.
        dataset: Ledger key of the private table (required with a ledger).
        release_id: Idempotency key of the charge (default: a fresh UUID).
        seed: Seed of training, noise and sampling.
        fingerprint: The request's hash, stored with the charge (default: a hash of the
            table, schema, method, amounts, rows, seed and config). Re-running a charged
            ``release_id`` with another request (another seed, say) is a ``ConflictError``
            before any training: one charge never pays for two independent DP outputs.

    Returns:
        A :class:`Release`.
    """
    if method not in METHODS:
        raise ValidationError(f"method must be one of {METHODS}, got {method!r}", field="method")
    if ledger is not None:
        if dataset is None:
            raise ValidationError("a ledger charge needs a dataset name", field="dataset")
        if not math.isfinite(epsilon):
            raise ValidationError("a ledger release needs a finite epsilon", field="epsilon")
        st = ledger.status(dataset)
        prior = _prior_charge(ledger, dataset, release_id)
        if prior is None and not st.allows(epsilon, delta):  # pre-flight: before compute
            raise PrivacyBudgetExceededError(
                f"dataset {dataset!r}: a release with epsilon={epsilon:g}, delta={delta:g} "
                f"does not fit; epsilon={st.epsilon_remaining:g}, delta={st.delta_remaining:g} "
                "remain",
                field="epsilon",
                details={"dataset": dataset, "requested_epsilon": epsilon},
            )
    codec = RowCodec(schema)
    codes = codec.to_codes(table)
    n_out = codes.shape[0] if n_rows is None else int(n_rows)
    if n_out < 1:
        raise ValidationError("n_rows must be >= 1", field="n_rows")
    if fingerprint is None:
        fingerprint = request_fingerprint(
            codes, schema, method, epsilon, delta, n_out, seed, config
        )
    if ledger is not None:
        prior = _prior_charge(ledger, dataset, release_id)
        if prior is not None and (prior.metadata or {}).get(FINGERPRINT_KEY) != fingerprint:
            raise ConflictError(
                f"dataset {dataset!r}: release {release_id!r} was already charged for a "
                "different request (another seed, table or setting); use a new release_id",
                field="release_id",
                details={"dataset": dataset, "release_id": release_id},
            )

    if method == "lm":
        base = config or TrainConfig()
        cfg = TrainConfig(**{**base.__dict__, "epsilon": epsilon, "delta": delta, "seed": seed})
        fitted = fit_tabular_lm(codec, codec.codes_to_tokens(codes), cfg)
        p = fitted.privacy
        mechanism: dict[str, Any] = {
            "name": "dp_sgd_tabular_lm",
            "paper": "Sablayrolles, Wang & Karrer 2023 (arXiv 2306.04803)",
            "hyperparameters": {
                k: getattr(cfg, k)
                for k in ("lr", "max_grad_norm", "batch_size", "epochs", "d_model", "n_layers")
            },
            "train_seconds": fitted.train_seconds,
        }
        if p is not None:
            mechanism.update(p.to_dict())
            spent_eps, eps2 = p.epsilon_prv, p.epsilon_rdp2
        else:
            spent_eps, eps2 = math.inf, math.inf

        def sample() -> list[dict[str, Any]]:
            return fitted.sample(n_out, seed=seed)
    else:
        from assay.generative.tabular.baseline import MSTSynthesizer

        mst = MSTSynthesizer(epsilon, delta, seed=seed).fit(codes, codec.sizes)
        priv = mst.privacy()
        mechanism = {
            "name": "mst_tree",
            **priv,
            "tree_edges": [[schema.names[a], schema.names[b]] for a, b in mst.edges],
        }
        spent_eps, eps2 = priv["epsilon"], priv["epsilon_rdp2"]

        def sample() -> list[dict[str, Any]]:
            return codec.from_codes(mst.sample(n_out, seed=seed), np.random.default_rng(seed))

    charge = None
    if ledger is not None:
        assert dataset is not None
        charge = ledger.charge(
            dataset,
            max(float(spent_eps), float(epsilon)),
            delta,
            release_id=release_id or uuid.uuid4().hex,
            description=f"synthetic table ({method}, {n_out} rows)",
            metadata={
                "method": method,
                "n_rows": n_out,
                "target_epsilon": epsilon,
                FINGERPRINT_KEY: fingerprint,
            },
        )
    rows = sample()
    report = {
        "dataset": dataset,
        "release_id": charge.release_id if charge else release_id,
        "epsilon_target": epsilon,
        "epsilon_spent": spent_eps,
        "delta": delta,
        "rows_in": int(codes.shape[0]),
        "rows_out": n_out,
        "schema": schema.to_dict(),
        "mechanism": mechanism,
        "ledger": ledger.status(dataset).to_dict() if ledger is not None and dataset else None,
        "reconstruction": reconstruction_report(eps2, schema).to_dict(),
    }
    return Release(rows, finite_json(report))
