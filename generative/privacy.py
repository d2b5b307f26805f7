"""Privacy accounting and the reconstruction-risk report.

Accounting. For DP-SGD with Poisson sampling rate ``q``, noise multiplier ``σ`` and ``T``
steps, :func:`dpsgd_epsilons` returns ε(δ) from Opacus's PRV accountant (Gopi, Lee & Wutschitz
2021: numerically composes the privacy-loss random variables; tight) and its RDP accountant
(Mironov 2017; Mironov, Talwar & Zhang 2019: an upper bound, looser), and the RDP ε at order
α = 2. For mechanisms analysed in zero-concentrated DP (the MST baseline), :func:`zcdp_to_dp`
and :func:`zcdp_rho_for` convert between ρ and (ε, δ) with the conversion of Canonne, Kamath &
Steinke (2020, Prop. 12 / the bound used by MST), and a ρ-zCDP mechanism is (α, αρ)-RDP.

Reconstruction (Guo, Karrer, Chaudhuri & van der Maaten, "Bounding Training Data
Reconstruction in Private (Deep) Learning", ICML 2022).

*Threat model (informed adversary).* The adversary knows the training algorithm, every
training record except one target ``x``, and the released output (model or synthetic table);
it wants to estimate ``x``. The bounds hold for *unbiased* estimators ``x̂`` (E[x̂] = x for every
x in the domain); they say nothing about biased guesses such as "predict the column mean".

*RDP bound (their Theorem 1).* If the mechanism is (2, ε₂)-RDP and each coordinate ranges over
an interval of width ``diam_i``, then for an unbiased estimator, coordinate by coordinate,
``E[(x̂_i − x_i)²] >= diam_i² / (4 (e^{ε₂} − 1))``, and averaged,
``E‖x̂ − x‖² / d >= Σ_i diam_i² / (4 d (e^{ε₂} − 1))``. (Proof: the Hammersley–Chapman–Robbins
bound with the χ² divergence ``e^{D_2} − 1 <= e^{ε₂} − 1`` between the outputs on ``x`` and a
point ``x'`` at distance ``>= diam_i / 2`` along coordinate ``i``.) Worked check:
σ=1, q=0.01, T=1000 gives ε₂ ≈ 0.172 and a bound ≈ 1.33 for unit ranges.

*FIL bound (their Section 4, Cramér–Rao).* For a mechanism whose output is ``f(x) + N(0, σ² I)``
with differentiable ``f``, the Fisher information about ``x`` is ``I(x) = J_fᵀ J_f / σ²``; with
``η² = Tr(I(x)) / d``, an unbiased estimator has ``E‖x̂ − x‖² / d >= 1 / η²`` (by Jensen on the
Cramér–Rao bound ``Tr(I⁻¹) / d``). :func:`gaussian_fil_eta2` computes η² from a Jacobian.
The FIL bound needs the released quantity to be differentiable in the record; it does **not**
apply to the tabular LM, whose record enters as discrete tokens (binned / categorical), so the
report marks it not applicable there instead of inventing a number.

Assumptions stated in every report: the schema (ranges, categories) is public; the privacy unit
is one row; ε, ε₂ are for add/remove-one adjacency as Opacus computes them (Guo et al. use the
same accountant in their experiments; a replace-one analysis can give a larger ε₂); the
hyperparameters were not tuned on the same private data (tuning spends extra privacy:
Papernot & Steinke 2022); Opacus's default (non-cryptographic) RNG draws the noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from assay.platform.errors import ValidationError

THREAT_MODEL = (
    "Informed adversary (Guo et al., ICML 2022): knows the training algorithm and its "
    "hyperparameters, every training row except one target row, and the released output "
    "(synthetic table or model); it builds an unbiased estimator of the target row. The bound "
    "is a lower bound on that estimator's mean squared error per coordinate."
)
ASSUMPTIONS = (
    "The schema (column ranges, bins, categories) is public and was not derived from the data.",
    "The privacy unit is one row; a person with several rows needs group privacy.",
    "epsilon and the order-2 RDP epsilon are for add/remove-one adjacency (Opacus's analysis of "
    "the Poisson-subsampled Gaussian mechanism), as in Guo et al.'s own experiments; a strict "
    "replace-one analysis can give a larger epsilon_2 and a weaker bound.",
    "Only unbiased estimators are covered; a biased guess (e.g. the column mean) can do better.",
    "Hyperparameters were not tuned on the same private data (tuning costs extra privacy).",
    "Noise comes from a non-cryptographic RNG (Opacus secure_mode=False).",
)


#: RDP orders for ε(δ): Opacus's defaults extended to large orders (small-ε regimes need them).
RDP_ORDERS = (
    [1 + x / 10.0 for x in range(1, 100)]
    + [float(a) for a in range(12, 64)]
    + [64.0, 80.0, 96.0, 128.0, 192.0, 256.0, 384.0, 512.0, 1024.0]
)


@dataclass(frozen=True)
class Epsilons:
    """ε(δ) of one DP-SGD run from Opacus's accountants, and its order-2 RDP ε."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon_prv: float
    epsilon_rdp: float
    rdp_order2: float


def rdp_epsilon_order2(noise_multiplier: float, sample_rate: float, steps: int) -> float:
    """ε₂: the RDP ε at order α = 2 of ``steps`` Poisson-subsampled Gaussian steps.

    ``opacus.accountants.analysis.rdp.compute_rdp(q=, noise_multiplier=, steps=, orders=2.0)``
    (Mironov, Talwar & Zhang 2019), composed additively over steps.

    Example:
        >>> round(rdp_epsilon_order2(1.0, 0.01, 1000), 3)
        0.172
    """
    from opacus.accountants.analysis.rdp import compute_rdp

    if noise_multiplier <= 0:
        return math.inf
    return float(
        compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=2.0)
    )


def dpsgd_epsilons(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> Epsilons:
    """ε(δ) of DP-SGD from Opacus's PRV and RDP accountants.

    Args:
        noise_multiplier: σ (noise std / clipping norm).
        sample_rate: Poisson rate ``q``.
        steps: ``T``.
        delta: δ.

    Example:
        >>> e = dpsgd_epsilons(1.0, 0.01, 1000, 1e-5)
        >>> e.epsilon_prv < e.epsilon_rdp
        True
    """
    from opacus.accountants import PRVAccountant, RDPAccountant

    if noise_multiplier <= 0:
        return Epsilons(noise_multiplier, sample_rate, steps, delta, math.inf, math.inf, math.inf)
    prv, rdp = PRVAccountant(), RDPAccountant()
    prv.history = [(noise_multiplier, sample_rate, steps)]
    rdp.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        # raised by the PRV accountant's internal RDP bound on its discretisation domain
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        epsilon_prv = float(prv.get_epsilon(delta=delta))
        epsilon_rdp = float(rdp.get_epsilon(delta=delta, alphas=RDP_ORDERS))
    return Epsilons(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        epsilon_prv=epsilon_prv,
        epsilon_rdp=epsilon_rdp,
        rdp_order2=rdp_epsilon_order2(noise_multiplier, sample_rate, steps),
    )


# -------------------------------------------------------------------------------------------
# zCDP (for the marginal baseline)
# -------------------------------------------------------------------------------------------


def zcdp_to_dp(rho: float, delta: float) -> float:
    """The ε for which ρ-zCDP implies (ε, δ)-DP.

    Canonne, Kamath & Steinke (2020), Prop. 12 (the conversion MST uses): for every α > 1,
    ``δ = exp((α−1)(αρ − ε)) / (α − 1) · (1 − 1/α)^α``; solved here for ε at the best α:
    ``ε(α) = αρ + (log(1/δ) + α log(1 − 1/α) − log(α − 1)) / (α − 1)``, minimised over α.
    Never worse than the classic ``ρ + 2 sqrt(ρ log(1/δ))``.
    """
    if rho <= 0:
        return 0.0
    from scipy.optimize import minimize_scalar

    def eps(a: float) -> float:
        return a * rho + (math.log(1 / delta) + a * math.log1p(-1 / a) - math.log(a - 1)) / (a - 1)

    res = minimize_scalar(eps, bounds=(1.0 + 1e-9, 1e6), method="bounded", options={"xatol": 1e-9})
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    return float(min(res.fun, classic))


def zcdp_rho_for(epsilon: float, delta: float) -> float:
    """The largest ρ with ``zcdp_to_dp(ρ, δ) <= ε`` (bisection)."""
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValidationError("epsilon must be > 0 and delta in (0, 1)", field="epsilon")
    lo, hi = 0.0, max(epsilon, 1.0)
    while zcdp_to_dp(hi, delta) < epsilon:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if zcdp_to_dp(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


# -------------------------------------------------------------------------------------------
# Reconstruction bounds (Guo et al. 2022)
# -------------------------------------------------------------------------------------------


def rdp_reconstruction_mse_bound(
    epsilon2: float, diameters: Sequence[float] | float = 1.0
) -> float:
    """Lower bound on an unbiased attacker's MSE per coordinate from (2, ε₂)-RDP.

    ``E‖x̂ − x‖² / d >= Σ_i diam_i² / (4 d (e^{ε₂} − 1))`` (Guo et al. 2022, Theorem 1).

    Args:
        epsilon2: RDP ε at order 2.
        diameters: ``diam_i`` of each coordinate (one number: the same for all).

    Example:
        >>> round(rdp_reconstruction_mse_bound(rdp_epsilon_order2(2.0, 0.01, 1000)), 2)
        8.68
    """
    diams = (
        [float(diameters)] if isinstance(diameters, int | float) else [float(d) for d in diameters]
    )
    if not diams:
        raise ValidationError("need at least one coordinate", field="diameters")
    if epsilon2 <= 0:
        return math.inf
    if math.isinf(epsilon2):
        return 0.0
    return sum(d * d for d in diams) / (4 * len(diams) * math.expm1(epsilon2))


def gaussian_fil_eta2(jacobian: Any, sigma: float) -> float:
    """η² = Tr(I(x)) / d for the Gaussian mechanism ``f(x) + N(0, σ² I)``.

    ``I(x) = J_fᵀ J_f / σ²`` (Guo et al. 2022, Section 4; Hannun, Guo & van der Maaten 2021), so
    ``Tr(I) = ‖J_f‖_F² / σ²``. The unbiased attacker's MSE per coordinate is ``>= 1 / η²``
    (:func:`fil_reconstruction_mse_bound`).

    Args:
        jacobian: ``m x d`` Jacobian of ``f`` at the target record (tensor or array).
        sigma: Noise standard deviation.
    """
    import torch

    j = torch.as_tensor(jacobian, dtype=torch.double)
    if j.ndim != 2:
        raise ValidationError(
            f"jacobian must be m x d, got shape {tuple(j.shape)}", field="jacobian"
        )
    if sigma <= 0:
        return math.inf
    return float((j**2).sum() / (sigma**2 * j.shape[1]))


def fil_reconstruction_mse_bound(eta2: float) -> float:
    """``E‖x̂ − x‖² / d >= 1 / η²`` (Guo et al. 2022, Cramér–Rao via FIL)."""
    return math.inf if eta2 <= 0 else 1.0 / eta2


@dataclass
class ReconstructionReport:
    """The reconstruction-risk section of a release's privacy report.

    Attributes:
        epsilon2: Order-2 RDP ε of the release.
        mse_per_coordinate: The RDP bound averaged over all coordinates (schema units²).
        columns: Per column: ``diameter``, ``mse_lower_bound`` and ``rmse_lower_bound`` (in the
            column's units; a categorical column is its one-hot block, diameter 1 per entry).
        fil: The FIL bound, or why it does not apply.
    """

    epsilon2: float
    mse_per_coordinate: float
    columns: dict[str, dict[str, float]]
    fil: dict[str, Any]
    threat_model: str = THREAT_MODEL
    assumptions: tuple[str, ...] = ASSUMPTIONS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["assumptions"] = list(self.assumptions)
        return finite_json(d)


def reconstruction_report(
    epsilon2: float,
    schema: Any,
    fil: Mapping[str, Any] | None = None,
) -> ReconstructionReport:
    """The RDP reconstruction bound for each column of a public schema.

    Numeric columns are one coordinate of width ``upper − lower``; a categorical column with
    ``m`` tokens is ``m`` one-hot coordinates of width 1.

    Args:
        epsilon2: Order-2 RDP ε of the mechanism.
        schema: A :class:`~assay.generative.tabular.schema.TableSchema`.
        fil: The FIL section; by default "not applicable: discrete inputs".
    """
    diams: list[float] = []
    cols: dict[str, dict[str, float]] = {}
    for c in schema.columns:
        if c.kind == "numeric":
            d = [c.diameter]
        else:
            d = [1.0] * c.size
        diams += d
        mse = rdp_reconstruction_mse_bound(epsilon2, d)
        cols[c.name] = {
            "kind": c.kind,
            "diameter": d[0],
            "coordinates": len(d),
            "mse_lower_bound": mse,
            "rmse_lower_bound": math.sqrt(mse),
            "rmse_over_diameter": math.sqrt(mse) / d[0],
        }
    fil_section = (
        dict(fil)
        if fil is not None
        else {
            "applicable": False,
            "reason": (
                "The record enters the model as discrete tokens (binned numerics, categories), so "
                "the released quantity is not differentiable in the record and the Cramér–Rao/FIL "
                "bound of Guo et al. (Sec. 4) does not apply; only the RDP bound is reported."
            ),
        }
    )
    return ReconstructionReport(
        epsilon2=epsilon2,
        mse_per_coordinate=rdp_reconstruction_mse_bound(epsilon2, diams),
        columns=cols,
        fil=fil_section,
    )


def finite_json(x: Any) -> Any:
    """Replace ±inf / nan by strings so the report is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x
