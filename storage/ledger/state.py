"""The privacy ledger's accounting rules, on a plain-dict state every backend loads.

Owns: the value types (:class:`Charge`, :class:`BudgetStatus`), the plain-dict state
(``{dataset: {"epsilon", "delta", "charges": [charge dict]}}``), and the rules applied to it —
validation of names and amounts, "a budget is never set below what is spent", same-id retries,
the charge-or-refuse decision with its floating-point tolerance. The in-memory and JSON-file
ledgers keep their whole state in this shape; the SQL ledger loads one dataset's rows into it
and applies the same functions, so the rules cannot drift between backends.

Composition is basic: ε's and δ's add up. That is valid for any mechanisms and is what a budget
of independent releases needs; it is conservative compared with a joint accountant.

May import: the standard library and :mod:`assay.platform.errors` only (no I/O, no SQL).

Example:
    >>> state: LedgerState = {}
    >>> set_budget(state, "hie", 4.0, 1e-5).epsilon_remaining
    4.0
    >>> record_charge(state, "hie", 3.0, 1e-6, "r1", "", None)[1]  # (charge, stored)
    True
    >>> budget_status(state, "hie").epsilon_remaining
    1.0
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from assay.platform.errors import (
    ConflictError,
    NotFoundError,
    PrivacyBudgetExceededError,
    ValidationError,
)

#: Slack for floating-point sums of charges (a budget spent exactly is not "exceeded").
TOLERANCE = 1e-9

#: ``dataset -> {"epsilon": float, "delta": float, "charges": [Charge as a dict]}``.
LedgerState = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Charge:
    """One release recorded against a dataset's budget."""

    dataset: str
    release_id: str
    epsilon: float
    delta: float
    created_at: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetStatus:
    """A dataset's budget and what has been spent of it."""

    dataset: str
    epsilon_budget: float
    delta_budget: float
    epsilon_spent: float
    delta_spent: float
    releases: int

    @property
    def epsilon_remaining(self) -> float:
        return max(0.0, self.epsilon_budget - self.epsilon_spent)

    @property
    def delta_remaining(self) -> float:
        return max(0.0, self.delta_budget - self.delta_spent)

    def allows(self, epsilon: float, delta: float) -> bool:
        """Whether a charge of ``(epsilon, delta)`` fits in the remaining budget."""
        return (
            self.epsilon_spent + epsilon <= self.epsilon_budget * (1 + TOLERANCE) + TOLERANCE
            and self.delta_spent + delta <= self.delta_budget * (1 + TOLERANCE) + 1e-15
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["epsilon_remaining"] = self.epsilon_remaining
        d["delta_remaining"] = self.delta_remaining
        return d


def check_amounts(epsilon: float, delta: float, what: str) -> None:
    """``ValidationError`` unless ``epsilon`` and ``delta`` are finite, ``>= 0``, ``delta < 1``."""
    for name, v in (("epsilon", epsilon), ("delta", delta)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValidationError(
                f"{what}: {name} must be a finite number >= 0, got {v!r}", field=name
            )
    if delta >= 1:
        raise ValidationError(f"{what}: delta must be < 1, got {delta!r}", field="delta")


def check_name(value: Any, name: str) -> str:
    """``value`` if it is a non-empty string of at most 200 characters (``ValidationError``
    naming ``name`` otherwise)."""
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValidationError(f"{name} must be a non-empty string (<= 200 chars)", field=name)
    return value


def budget_status(state: LedgerState, dataset: str) -> BudgetStatus:
    """``dataset``'s budget and spend. ``NotFoundError`` if it has no budget."""
    entry = state.get(dataset)
    if entry is None:
        raise NotFoundError(f"dataset {dataset!r} has no privacy budget", field="dataset")
    charges = entry["charges"]
    return BudgetStatus(
        dataset=dataset,
        epsilon_budget=entry["epsilon"],
        delta_budget=entry["delta"],
        epsilon_spent=math.fsum(c["epsilon"] for c in charges),
        delta_spent=math.fsum(c["delta"] for c in charges),
        releases=len(charges),
    )


def charges_of(state: LedgerState, dataset: str) -> list[Charge]:
    """``dataset``'s charges, oldest first. ``NotFoundError`` if it has no budget."""
    budget_status(state, dataset)
    return [Charge(**c) for c in state[dataset]["charges"]]


def set_budget(state: LedgerState, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
    """Create or change ``dataset``'s budget in ``state``.

    Raises ``ConflictError`` (``state`` untouched) when the new budget is below what is spent.
    """
    check_name(dataset, "dataset")
    check_amounts(epsilon, delta, f"budget of {dataset!r}")
    if dataset in state:
        st = budget_status(state, dataset)
        if epsilon < st.epsilon_spent - TOLERANCE or delta < st.delta_spent - 1e-15:
            raise ConflictError(
                f"dataset {dataset!r}: cannot set the budget to epsilon={epsilon:g}, "
                f"delta={delta:g} below what is already spent (epsilon={st.epsilon_spent:g}, "
                f"delta={st.delta_spent:g})",
                field="epsilon",
                details={"dataset": dataset},
            )
        state[dataset]["epsilon"], state[dataset]["delta"] = float(epsilon), float(delta)
    else:
        state[dataset] = {"epsilon": float(epsilon), "delta": float(delta), "charges": []}
    return budget_status(state, dataset)


#: The charge metadata key holding the hash of the request a charge paid for.
FINGERPRINT_KEY = "request_fingerprint"


def record_charge(
    state: LedgerState,
    dataset: str,
    epsilon: float,
    delta: float,
    release_id: str,
    description: str,
    metadata: dict[str, Any] | None,
) -> tuple[Charge, bool]:
    """Charge one release to ``dataset`` in ``state``, or refuse it.

    A ``release_id`` charged before with the same amounts *and* the same request fingerprint
    (``metadata["request_fingerprint"]``: a hash of everything that shapes the DP output,
    seed and data included) returns that charge unchanged (a retried request is not charged
    twice); other amounts or another request under the same id is a ``ConflictError`` (one
    charge never covers two independent DP outputs).

    Returns:
        ``(charge, stored)``: ``stored`` is ``False`` for a same-id retry (nothing to persist).

    Raises:
        PrivacyBudgetExceededError: The charge does not fit; ``state`` is untouched.
    """
    check_name(release_id, "release_id")
    check_amounts(epsilon, delta, f"release {release_id!r}")
    st = budget_status(state, dataset)
    for c in state[dataset]["charges"]:
        if c["release_id"] == release_id:
            same_print = (c.get("metadata") or {}).get(FINGERPRINT_KEY) == (metadata or {}).get(
                FINGERPRINT_KEY
            )
            if c["epsilon"] == float(epsilon) and c["delta"] == float(delta) and same_print:
                return Charge(**c), False
            if not same_print:
                raise ConflictError(
                    f"dataset {dataset!r}: release {release_id!r} was already charged for a "
                    "different request (another seed, table or setting); use a new release_id",
                    field="release_id",
                    details={"dataset": dataset, "release_id": release_id},
                )
            raise ConflictError(
                f"dataset {dataset!r}: release {release_id!r} was already charged with "
                f"epsilon={c['epsilon']:g}, delta={c['delta']:g}",
                field="release_id",
                details={"dataset": dataset, "release_id": release_id},
            )
    if not st.allows(epsilon, delta):
        raise PrivacyBudgetExceededError(
            f"dataset {dataset!r}: release {release_id!r} needs epsilon={epsilon:g}, "
            f"delta={delta:g} but only epsilon={st.epsilon_remaining:g}, "
            f"delta={st.delta_remaining:g} remain of the budget (epsilon={st.epsilon_budget:g}, "
            f"delta={st.delta_budget:g})",
            field="epsilon",
            details={
                "dataset": dataset,
                "release_id": release_id,
                "requested_epsilon": epsilon,
                "requested_delta": delta,
                "epsilon_remaining": st.epsilon_remaining,
                "delta_remaining": st.delta_remaining,
            },
        )
    charge = Charge(
        dataset=dataset,
        release_id=release_id,
        epsilon=float(epsilon),
        delta=float(delta),
        created_at=datetime.now(UTC).isoformat(),
        description=description,
        metadata=dict(metadata or {}),
    )
    json.dumps(charge.metadata)  # must be JSON-serialisable for every backend
    state[dataset]["charges"].append(asdict(charge))
    return charge, True


__all__ = [
    "FINGERPRINT_KEY",
    "TOLERANCE",
    "BudgetStatus",
    "Charge",
    "LedgerState",
    "budget_status",
    "charges_of",
    "check_amounts",
    "check_name",
    "record_charge",
    "set_budget",
]
