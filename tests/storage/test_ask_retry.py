"""The whole locked ask is retried (bounded) on transient database failures, and an exhausted
retry is a typed ``StorageBusyError`` (HTTP 503 with ``Retry-After``), never a 500. Every
locked ask shares the policy: ``ask``, ``ask_batch``, ``attach_trial`` and the orchestrator's
``fill_candidates``.

The failures are real database errors raised by the real database: a PostgreSQL trigger
raises the SQLSTATE under test (40P01 deadlock, 40001 serialization failure, 23505 unique
violation) for the first ``n`` trial inserts (a sequence counts them, since sequences survive
the rollback), optionally as a deferred constraint trigger so it fires at COMMIT. On SQLite a
trigger gated by a connection function raises SQLite's own ``UNIQUE constraint failed``.
(The in-memory backend has no database to fail.)
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from assay.platform.errors import StorageBusyError
from assay.service.app import create_app
from assay.service.engine import Engine
from assay.service.generation import ASK_ATTEMPTS
from assay.service.settings import Settings
from assay.storage.factory import open_store

SPEC = {
    "name": "retry",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
    "seed": 1,
}


@pytest.fixture
def pg_store(postgres_url):
    s = open_store(postgres_url)
    yield s
    s.close()


def inject_pg(store, sqlstate: str, failures: int, *, at_commit: bool = False) -> None:
    """Make the next ``failures`` trial inserts fail with ``sqlstate`` (at COMMIT if asked)."""
    kind = (
        "CONSTRAINT TRIGGER assay_fail AFTER INSERT ON trials DEFERRABLE INITIALLY DEFERRED"
        if at_commit
        else "TRIGGER assay_fail BEFORE INSERT ON trials"
    )
    with store.engine.begin() as c:
        c.execute(text("CREATE SEQUENCE assay_fail_seq"))
        c.execute(
            text(
                "CREATE FUNCTION assay_fail() RETURNS trigger AS $$ BEGIN "
                f"IF nextval('assay_fail_seq') <= {failures} THEN "
                f"RAISE EXCEPTION 'injected failure' USING ERRCODE = '{sqlstate}'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        c.execute(text(f"CREATE {kind} FOR EACH ROW EXECUTE FUNCTION assay_fail()"))


def stored(store, exp_id) -> tuple[list[int], int]:
    exp = store.get_experiment(exp_id)
    created = [e for e in store.list_events(experiment_id=exp_id) if e.reason == "created"]
    return [t.index for t in exp.trials], len(created)


@pytest.mark.parametrize(
    ("sqlstate", "at_commit"),
    [("40P01", False), ("40001", False), ("40001", True), ("23505", False)],
    ids=["deadlock-in-insert", "serialization-in-insert", "serialization-at-commit",
         "trial-number-clash"],
)  # fmt: skip
def test_pg_ask_retries_whole_transaction(pg_store, sqlstate, at_commit) -> None:
    engine = Engine(pg_store)
    exp = engine.create_experiment(SPEC)
    inject_pg(pg_store, sqlstate, failures=1, at_commit=at_commit)
    trials = engine.ask(exp.id, n=2, idempotency_key="k1")
    assert [t.index for t in trials] == [0, 1]
    assert stored(pg_store, exp.id) == ([0, 1], 2)  # written once, no half-ask left behind
    assert [t.id for t in engine.ask(exp.id, n=2, idempotency_key="k1")] == [t.id for t in trials]


def test_pg_exhausted_retry_is_503_with_retry_after(pg_store) -> None:
    engine = Engine(pg_store)
    exp = engine.create_experiment(SPEC)
    inject_pg(pg_store, "40P01", failures=10 * ASK_ATTEMPTS, at_commit=True)
    with pytest.raises(StorageBusyError):
        engine.ask(exp.id)
    with TestClient(create_app(Settings(auth="none"), store=pg_store)) as api:
        r = api.post(f"/api/v1/experiments/{exp.id}/trials:ask", json={"n": 1})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "storage_busy"
        r = api.post(f"/api/v1/experiments/{exp.id}/trials:ask_batch", json={"n_arms": 2})
        assert r.status_code == 503 and "retry-after" in r.headers, r.text
    assert stored(pg_store, exp.id) == ([], 0)


def flaky_sqlite(tmp_path, failures: int):
    """A SQLite store whose next ``remaining["n"]`` trial inserts fail as a trial-number
    clash (SQLite's own ``UNIQUE constraint failed``); returns ``(store, remaining)``."""
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    remaining = {"n": failures}

    def should_fail() -> int:
        remaining["n"] -= 1
        return int(remaining["n"] >= 0)

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
    return store, remaining


def test_sqlite_trial_number_clash_is_retried(tmp_path) -> None:
    store, remaining = flaky_sqlite(tmp_path, 2)
    engine = Engine(store)
    exp = engine.create_experiment(SPEC)
    assert [t.index for t in engine.ask(exp.id)] == [0]
    assert remaining["n"] < 0 and stored(store, exp.id) == ([0], 1)
    remaining["n"] = 10 * ASK_ATTEMPTS
    with pytest.raises(StorageBusyError):
        engine.ask(exp.id)
    assert stored(store, exp.id) == ([0], 1)
    store.close()


def test_fill_candidates_and_attach_trial_share_the_retry(tmp_path) -> None:
    """The orchestrator's ask (``fill_candidates``) and ``attach_trial`` run through the same
    retry as ``ask``: a clash is retried, an exhausted retry stores nothing."""
    store, remaining = flaky_sqlite(tmp_path, 2)
    engine = Engine(store)
    exp = engine.create_experiment(SPEC)
    assert [t.index for t in engine.fill_candidates(exp.id, 3)] == [0, 1, 2]
    assert remaining["n"] < 0 and stored(store, exp.id) == ([0, 1, 2], 3)
    remaining["n"] = 1
    assert engine.attach_trial(exp.id, {"x": 0.25}).index == 3
    remaining["n"] = 10 * ASK_ATTEMPTS
    with pytest.raises(StorageBusyError):
        engine.fill_candidates(exp.id, 6)
    with pytest.raises(StorageBusyError):
        engine.attach_trial(exp.id, {"x": 0.75})
    assert stored(store, exp.id) == ([0, 1, 2, 3], 4)
    store.close()


def test_pg_fill_candidates_retries_a_deadlock(pg_store) -> None:
    engine = Engine(pg_store)
    exp = engine.create_experiment(SPEC)
    inject_pg(pg_store, "40P01", failures=1)
    assert [t.index for t in engine.fill_candidates(exp.id, 2)] == [0, 1]
    assert stored(pg_store, exp.id) == ([0, 1], 2)


def test_pg_tell_is_not_blocked_by_a_held_ask_lock(pg_store) -> None:
    """A tell inserts a trial event whose foreign key references the experiment row (a
    ``FOR KEY SHARE`` check). The ask lock is ``FOR NO KEY UPDATE``, which does not conflict
    with that, so tells keep flowing while an ask holds the lock (model fit included); two
    asks still exclude each other."""
    import threading

    from assay.platform.experiment import Observation, TrialState

    engine = Engine(pg_store)
    exp = engine.create_experiment(SPEC)
    [trial] = engine.ask(exp.id)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with pg_store.lock_experiment(exp.id):
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        done: list = []
        teller = threading.Thread(
            target=lambda: done.append(
                pg_store.transition_trial(
                    trial.id, TrialState.COMPLETED,
                    observations={trial.arms[0].name: {"y": Observation("y", 1.0, 0.1)}},
                )
            )
        )  # fmt: skip
        teller.start()
        teller.join(timeout=5)
        assert done and done[0].state is TrialState.COMPLETED, "the tell waited for the ask lock"
        second: list = []
        asker = threading.Thread(target=lambda: second.append(engine.ask(exp.id)))
        asker.start()
        asker.join(timeout=1)
        assert not second, "a second ask must wait for the lock"
    finally:
        release.set()
        holder.join(10)
    asker.join(30)
    assert [t.index for t in second[0]] == [1]
