"""One behavioural suite for every PrivacyLedger backend: in memory, a JSON file, and the SQL
ledger of ``assay.storage`` on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from assay.platform.errors import (
    ConflictError,
    NotFoundError,
    PrivacyBudgetExceededError,
    ValidationError,
)
from assay.storage.ledger import InMemoryPrivacyLedger, JsonFilePrivacyLedger, PrivacyLedger


@pytest.fixture(params=["memory", "json", "sqlite", "postgresql"])
def ledger(request, tmp_path: Path):
    if request.param == "memory":
        yield InMemoryPrivacyLedger()
    elif request.param == "json":
        yield JsonFilePrivacyLedger(tmp_path / "ledger.json")
    else:
        from assay.storage.sql import SqlPrivacyLedger

        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_url")
        )
        sql_ledger = SqlPrivacyLedger.from_url(url, migrate=True)
        yield sql_ledger
        sql_ledger.close()


def _snapshot(ledger: PrivacyLedger, dataset: str):
    return ledger.status(dataset), ledger.charges(dataset)


def test_over_budget_release_is_refused_and_nothing_is_stored(ledger):
    ledger.set_budget("hie", epsilon=5.0, delta=1e-5)
    first = ledger.charge("hie", 3.0, 1e-6, release_id="r1", metadata={"method": "lm"})
    assert first.epsilon == 3.0 and first.metadata == {"method": "lm"}
    before = _snapshot(ledger, "hie")
    raw = Path(ledger.path).read_bytes() if isinstance(ledger, JsonFilePrivacyLedger) else None
    with pytest.raises(PrivacyBudgetExceededError) as e:
        ledger.charge("hie", 2.5, 1e-6, release_id="r2")
    assert isinstance(e.value, ConflictError) and e.value.code == "privacy_budget_exceeded"
    assert "'hie'" in str(e.value) and "r2" in str(e.value)
    assert e.value.details["epsilon_remaining"] == pytest.approx(2.0)
    assert _snapshot(ledger, "hie") == before
    if raw is not None:
        assert Path(ledger.path).read_bytes() == raw
    # delta is a budget too
    with pytest.raises(PrivacyBudgetExceededError):
        ledger.charge("hie", 0.1, 1e-4, release_id="r3")
    assert _snapshot(ledger, "hie") == before


def test_budget_can_be_spent_exactly_despite_float_sums(ledger):
    ledger.set_budget("d", epsilon=1.0, delta=3e-6)
    for i in range(10):
        ledger.charge("d", 0.1, 3e-7, release_id=f"r{i}")
    st = ledger.status("d")
    assert st.releases == 10 and st.epsilon_spent == pytest.approx(1.0)
    with pytest.raises(PrivacyBudgetExceededError):
        ledger.charge("d", 1e-3, 0.0, release_id="one-more")


def test_release_ids_make_charges_idempotent(ledger):
    ledger.set_budget("d", epsilon=2.0, delta=1e-5)
    a = ledger.charge("d", 1.5, 1e-6, release_id="same")
    b = ledger.charge("d", 1.5, 1e-6, release_id="same")  # a retried request
    assert a == b and ledger.status("d").releases == 1
    with pytest.raises(ConflictError, match="already charged"):
        ledger.charge("d", 0.1, 1e-6, release_id="same")


def test_budget_changes_cannot_go_below_spend(ledger):
    ledger.set_budget("d", epsilon=2.0, delta=1e-5)
    ledger.charge("d", 1.5, 1e-6, release_id="r")
    with pytest.raises(ConflictError, match="below what is already spent"):
        ledger.set_budget("d", epsilon=1.0, delta=1e-5)
    assert ledger.set_budget("d", epsilon=4.0, delta=1e-5).epsilon_remaining == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("eps", "delta", "release_id"),
    [(-1.0, 0.0, "r"), (math.nan, 0.0, "r"), (math.inf, 0.0, "r"), (1.0, 1.0, "r"), (1.0, 0, "")],
)
def test_invalid_charges_are_validation_errors(ledger, eps, delta, release_id):
    ledger.set_budget("d", epsilon=2.0, delta=1e-5)
    with pytest.raises(ValidationError):
        ledger.charge("d", eps, delta, release_id=release_id)
    assert ledger.status("d").releases == 0


def test_unknown_dataset(ledger):
    with pytest.raises(NotFoundError):
        ledger.status("nope")
    with pytest.raises(NotFoundError):
        ledger.charge("nope", 1.0, 0.0, release_id="r")


def test_concurrent_charges_never_overshoot(ledger):
    ledger.set_budget("d", epsilon=5.0, delta=1e-5)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            ledger.charge("d", 1.0, 0.0, release_id=f"r{i}")
            result = "ok"
        except PrivacyBudgetExceededError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 5 and outcomes.count("refused") == 7
    assert ledger.status("d").epsilon_spent == pytest.approx(5.0)


def test_json_ledger_persists_across_instances(tmp_path):
    path = tmp_path / "sub" / "ledger.json"
    JsonFilePrivacyLedger(path).set_budget("d", epsilon=3.0, delta=1e-5)
    JsonFilePrivacyLedger(path).charge("d", 2.0, 1e-6, release_id="r")
    st = JsonFilePrivacyLedger(path).status("d")
    assert st.epsilon_spent == 2.0 and st.releases == 1
    path.write_text('{"something": "else"}')
    with pytest.raises(ValidationError, match="not an Assay privacy ledger"):
        JsonFilePrivacyLedger(path).status("d")
