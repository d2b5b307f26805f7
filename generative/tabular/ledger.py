"""Privacy ledger: a per-dataset (ε, δ) budget that every release is charged against.

Semantics every backend implements (in memory here, a JSON file for the offline CLI, SQL in
:mod:`assay.storage.privacy_ledger`), checked by one shared test suite:

* ``set_budget(dataset, epsilon, delta)`` creates a dataset's budget or changes it; a budget
  can never be set below what has already been spent (``ConflictError``).
* ``charge(dataset, epsilon, delta, release_id=...)`` is **one atomic charge-or-refuse**: under
  the backend's lock / transaction it reads the spent totals, and either records the charge or
  raises :class:`PrivacyBudgetExceededError` having stored nothing. Concurrent charges can
  therefore never overshoot the budget. A SQL backend does this in one transaction that locks
  the dataset's budget row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
  SQLite), sums its charges, and inserts the new charge row.
* ``release_id`` is unique per dataset: charging again with the same id and the same amounts
  returns the existing charge (a retried request is not charged twice); with different
  amounts it is a ``ConflictError``.
* Composition is basic (ε's and δ's add up). That is valid for any mechanisms and is what a
  budget of independent releases needs; it is conservative compared with a joint accountant.

Callers must charge *before* publishing: charge, then write the release. If writing fails
afterwards the budget stays spent, which errs on the side of privacy.

Example:
    >>> ledger = InMemoryPrivacyLedger()
    >>> _ = ledger.set_budget("hie", epsilon=4.0, delta=1e-5)
    >>> _ = ledger.charge("hie", 3.0, 1e-6, release_id="r1")
    >>> ledger.charge("hie", 3.0, 1e-6, release_id="r2")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    assay.generative.tabular.ledger.PrivacyBudgetExceededError: dataset 'hie': release 'r2' needs epsilon=3, delta=1e-06 but only epsilon=1, delta=9e-06 remain of the budget (epsilon=4, delta=1e-05)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assay.platform.errors import ConflictError, NotFoundError, ValidationError

#: Slack for floating-point sums of charges (a budget spent exactly is not "exceeded").
TOLERANCE = 1e-9


class PrivacyBudgetExceededError(ConflictError):
    """A release would spend more ε or δ than the dataset's remaining budget (nothing stored).

    ``details`` carries ``dataset``, ``release_id``, the requested and remaining amounts.
    """

    code = "privacy_budget_exceeded"


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


def _check_amounts(epsilon: float, delta: float, what: str) -> None:
    for name, v in (("epsilon", epsilon), ("delta", delta)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValidationError(
                f"{what}: {name} must be a finite number >= 0, got {v!r}", field=name
            )
    if delta >= 1:
        raise ValidationError(f"{what}: delta must be < 1, got {delta!r}", field="delta")


def _check_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValidationError(f"{name} must be a non-empty string (<= 200 chars)", field=name)
    return value


class PrivacyLedger(ABC):
    """The interface of every ledger backend (see the module docstring for the semantics)."""

    @abstractmethod
    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        """Create or change ``dataset``'s budget. ``ConflictError`` below what is spent."""

    @abstractmethod
    def status(self, dataset: str) -> BudgetStatus:
        """The budget and spend. ``NotFoundError`` if the dataset has no budget."""

    @abstractmethod
    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        """Atomically record a release or refuse it (:class:`PrivacyBudgetExceededError`)."""

    @abstractmethod
    def charges(self, dataset: str) -> list[Charge]:
        """The dataset's charges, oldest first. ``NotFoundError`` if it has no budget."""


# -------------------------------------------------------------------------------------------
# Backend-independent logic on a plain-dict state (shared by the in-memory and file ledgers)
# -------------------------------------------------------------------------------------------

State = dict[str, dict[str, Any]]  # dataset -> {"epsilon", "delta", "charges": [dict]}


def _status(state: State, dataset: str) -> BudgetStatus:
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


def _set_budget(state: State, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
    _check_name(dataset, "dataset")
    _check_amounts(epsilon, delta, f"budget of {dataset!r}")
    if dataset in state:
        st = _status(state, dataset)
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
    return _status(state, dataset)


def _charge(
    state: State,
    dataset: str,
    epsilon: float,
    delta: float,
    release_id: str,
    description: str,
    metadata: dict[str, Any] | None,
) -> tuple[Charge, bool]:
    """Returns ``(charge, stored)``; raises without touching ``state`` when refused."""
    _check_name(release_id, "release_id")
    _check_amounts(epsilon, delta, f"release {release_id!r}")
    st = _status(state, dataset)
    for c in state[dataset]["charges"]:
        if c["release_id"] == release_id:
            if c["epsilon"] == float(epsilon) and c["delta"] == float(delta):
                return Charge(**c), False
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


class InMemoryPrivacyLedger(PrivacyLedger):
    """A thread-safe ledger in a dict (tests, notebooks, the in-memory Assay store)."""

    def __init__(self) -> None:
        self._state: State = {}
        self._lock = threading.Lock()

    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        with self._lock:
            return _set_budget(self._state, dataset, epsilon, delta)

    def status(self, dataset: str) -> BudgetStatus:
        with self._lock:
            return _status(self._state, dataset)

    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        with self._lock:
            return _charge(self._state, dataset, epsilon, delta, release_id, description, metadata)[
                0
            ]

    def charges(self, dataset: str) -> list[Charge]:
        with self._lock:
            _status(self._state, dataset)
            return [Charge(**c) for c in self._state[dataset]["charges"]]


class JsonFilePrivacyLedger(PrivacyLedger):
    """A ledger in one JSON file: ``assay synth`` offline, when no database URL is given.

    Every operation takes an exclusive ``fcntl`` lock on ``<path>.lock``, reads the file,
    applies the change and replaces the file atomically (write to a temporary file, fsync,
    ``os.replace``), so concurrent processes on one machine serialise and a crash never leaves
    a half-written ledger. (Not for network file systems without working ``flock``.)

    Args:
        path: The JSON file (created on first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[State]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> State:
        if not self.path.exists():
            return {}
        with open(self.path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValidationError(f"{self.path} is not an Assay privacy ledger", field="ledger")
        return data["datasets"]

    def _write(self, state: State) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "datasets": state}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def set_budget(self, dataset: str, epsilon: float, delta: float) -> BudgetStatus:
        with self._locked() as state:
            st = _set_budget(state, dataset, epsilon, delta)
            self._write(state)
            return st

    def status(self, dataset: str) -> BudgetStatus:
        with self._locked() as state:
            return _status(state, dataset)

    def charge(
        self,
        dataset: str,
        epsilon: float,
        delta: float,
        *,
        release_id: str,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Charge:
        with self._locked() as state:
            charge, stored = _charge(
                state, dataset, epsilon, delta, release_id, description, metadata
            )
            if stored:
                self._write(state)
            return charge

    def charges(self, dataset: str) -> list[Charge]:
        with self._locked() as state:
            _status(state, dataset)
            return [Charge(**c) for c in state[dataset]["charges"]]
