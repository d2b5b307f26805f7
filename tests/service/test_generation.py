"""Every locked ask shares one retry policy: ``fill_candidates`` (the orchestrator's) and
``attach_trial`` are retried like ``ask`` and ``ask_batch`` when the database reports a
transient failure, and an exhausted retry is a typed ``StorageBusyError`` with nothing stored.

The failure is SQLite's own ``UNIQUE constraint failed`` on the trial insert, raised by a
trigger gated by a connection function (the same way ``tests/storage/test_ask_retry.py``
injects it), so the real store's error translation and rollback are under test.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from assay.platform.errors import StorageBusyError
from assay.service.engine import Engine
from assay.service.generation import ASK_ATTEMPTS, derive_seed, run_locked
from assay.storage.factory import open_store

SPEC = {
    "name": "retry",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "seed": 1,
}


@pytest.fixture
def flaky(tmp_path):
    """``(store, failures)``: the next ``failures["n"]`` trial inserts fail as a clash."""
    store = open_store(f"sqlite:///{tmp_path / 'flaky.db'}")
    failures = {"n": 0}

    def should_fail() -> int:
        failures["n"] -= 1
        return int(failures["n"] >= 0)

    @event.listens_for(store.engine, "connect")
    def _register(dbapi_conn, _record) -> None:
        dbapi_conn.create_function("assay_should_fail", 0, should_fail)

    store.engine.dispose()  # new connections get the function
    with store.engine.begin() as c:
        c.execute(
            text(
                "CREATE TRIGGER assay_fail BEFORE INSERT ON trials WHEN assay_should_fail() "
                "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: trials.experiment_id, "
                "trials.index'); END"
            )
        )
    yield store, failures
    store.close()


def _indices(store, exp_id: int) -> list[int]:
    return [t.index for t in store.get_experiment(exp_id).trials]


def test_fill_candidates_is_retried(flaky) -> None:
    store, failures = flaky
    engine = Engine(store)
    exp = engine.create_experiment(SPEC)
    failures["n"] = 2
    queued = engine.fill_candidates(exp.id, 3)
    assert [t.index for t in queued] == [0, 1, 2] and failures["n"] < 0
    assert _indices(store, exp.id) == [0, 1, 2]  # written once
    failures["n"] = 10 * ASK_ATTEMPTS
    with pytest.raises(StorageBusyError):
        engine.fill_candidates(exp.id, 5)
    assert _indices(store, exp.id) == [0, 1, 2]


def test_attach_trial_is_retried(flaky) -> None:
    store, failures = flaky
    engine = Engine(store)
    exp = engine.create_experiment(SPEC)
    failures["n"] = 1
    trial = engine.attach_trial(exp.id, {"x": 0.25})
    assert trial.index == 0 and trial.parameters == {"x": 0.25}
    failures["n"] = 10 * ASK_ATTEMPTS
    with pytest.raises(StorageBusyError):
        engine.attach_trial(exp.id, {"x": 0.75})
    assert _indices(store, exp.id) == [0]


def test_run_locked_gives_up_after_the_attempts(flaky) -> None:
    store, _ = flaky
    exp = Engine(store).create_experiment(SPEC)
    calls = []

    def work(lock):
        calls.append(lock.experiment.id)
        raise StorageBusyError("still busy")

    with pytest.raises(StorageBusyError, match="still busy"):
        run_locked(store, exp.id, work, verb="test")
    assert calls == [exp.id] * ASK_ATTEMPTS


def test_seeds_differ_per_ask_and_repeat_for_the_same_data() -> None:
    assert derive_seed(1, 0) == derive_seed(1, 0)
    assert len({derive_seed(1, k) for k in range(100)}) == 100
    assert all(0 <= derive_seed(2**40, k) < 2**31 - 1 for k in range(10))
