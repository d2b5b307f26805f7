"""The request path's round trips to the database (issue 19, service throughput).

An ask holds the experiment's lock for every statement it sends, and a tell is a handful of
statements: on a busy server the number of round trips, not Python, sets the throughput.
These tests pin the counts (so a change that adds a query per trial, or re-reads what it
just wrote, fails here), check that what an ask returns is what a later read gives, and that
a pooled PostgreSQL connection that died is replaced without an error (the pool no longer
pre-pings every checkout).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

from assay.service.engine import Engine

EXP = {
    "name": "rt",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "y", "type": "float", "bounds": [0, 1]},
    ],
    "objective": "f",
    "outcome_constraints": ["c <= 0.8"],
    "generator": "sobol",
    "seed": 0,
}
OBS = {"f": [0.1, 0.01], "c": [0.2, 0.01]}


@contextmanager
def counting(store):
    """Count the statements ``store``'s engine sends (BEGIN/COMMIT not included)."""
    sent: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        verb = statement.split(None, 1)[0].upper()
        if verb not in ("BEGIN", "COMMIT", "ROLLBACK"):  # SQLite's own BEGIN IMMEDIATE
            sent.append(statement if verb == "SELECT" and statement[7:].strip() == "1" else verb)

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def test_sobol_ask_and_tell_use_a_fixed_handful_of_statements(sql_store):
    engine = Engine(sql_store)
    exp = engine.create_experiment(EXP)
    for _ in range(3):  # warm: the snapshot cache holds the experiment's trials
        engine.tell(engine.ask(exp.id, 1)[0].id, OBS)
    with counting(sql_store) as one:
        trial = engine.ask(exp.id, 1)[0]
    with counting(sql_store) as hundred:
        engine.ask(exp.id, 100)
    with counting(sql_store) as tell:
        engine.tell(trial.id, OBS)
    # the definition (it may have been PATCHed) + lock + key scan + (changed trials) + trials,
    # arms, links, events + experiment update
    assert len(one) <= 9, one
    if sql_store.dialect == "postgresql":
        # lock timeout + lock + key scan + (changed trials) + ONE statement for every row the
        # ask writes (data-modifying CTEs, see ``pg_insert_trials``)
        assert len(one) <= 5, one
        assert sum(s.startswith("INSERT") or s.startswith("UPDATE") for s in one) == 0, one
    # more trials per ask are the same multi-row statements, not more round trips
    assert len(hundred) <= len(one) + 1, hundred
    # trial with its arms, the current definition and whether the project has an active
    # webhook (one statement), compare-and-set, observations, event; no outbox transaction
    # without a subscription
    assert len(tell) <= 4, tell
    if sql_store.dialect == "postgresql":  # the trial, then ONE statement (see pg_transition)
        assert len(tell) <= 2, tell
    assert not any(s.startswith("SELECT 1") for s in one + tell)  # no pre-ping on checkout


def test_ask_returns_what_a_later_read_gives(sql_store):
    """The trials an ask returns are built from what it wrote, not read back: they must
    equal a fresh read, arms reused by name (the control) included."""
    engine = Engine(sql_store)
    exp = engine.create_experiment(
        {**EXP, "name": "ab", "status_quo": {"x": 0.5, "y": 0.5}, "generator": "sobol"}
    )
    asked = engine.ask(exp.id, 5, idempotency_key="k1", lease_seconds=60)
    batch = engine.ask_batch(exp.id, 4)
    batch2 = engine.ask_batch(exp.id, 3, include=[batch.arms[1].name])
    for t in [*asked, batch, batch2]:
        stored = sql_store.get_trial(t.id)
        assert stored == t
    assert [t.index for t in asked] == [0, 1, 2, 3, 4]
    assert batch2.arms[0].name == batch.arms[0].name == "status_quo"
    assert batch2.arms[1].name == batch.arms[1].name
    assert engine.ask(exp.id, 5, idempotency_key="k1") == asked  # replay reads them back


def test_pg_dead_pooled_connection_is_replaced(postgres_url):
    """Without pre-ping, a pooled connection the server closed fails its first statement;
    the transaction runner retries on a fresh connection and the caller sees no error."""
    from assay.storage.factory import open_store

    store = open_store(postgres_url)
    try:
        engine = Engine(store)
        exp = engine.create_experiment(EXP)
        trial = engine.ask(exp.id, 1)[0]
        with store.engine.connect() as c:  # every pooled connection but this one dies
            c.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        told = engine.tell(trial.id, OBS)
        assert told.state.value == "completed"
        assert engine.ask(exp.id, 1)[0].index == 1
    finally:
        store.close()


@pytest.mark.parametrize("n", [1, 7])
def test_joined_load_of_changed_trials_matches_full_load(sql_store, n):
    """Changed trials are re-read in one joined query (few) or three (many): same result."""
    from sqlalchemy import select

    from assay.storage.orm import TrialRow
    from assay.storage.sql.codec import load_some_trials, load_trials

    engine = Engine(sql_store)
    exp = engine.create_experiment({**EXP, "name": f"j{n}", "status_quo": {"x": 0.5, "y": 0.5}})
    engine.ask_batch(exp.id, 3)
    for t in engine.ask(exp.id, n):
        engine.tell(t.id, OBS)

    ids_stmt = select(TrialRow.id).where(TrialRow.experiment_id == exp.id)

    def both(s):
        full = load_trials(s, ids_stmt)
        return full, load_some_trials(s, [t.id for t in full])

    full, joined = sql_store.run_transaction(both, write=False)
    assert joined == full
    assert len(full) == n + 1


def test_tell_sees_definitions_and_webhooks_changed_by_another_process(sql_store):
    """The tell's definition and webhook check come from its own first statement, so a PATCH
    or a new subscription made through another server process (another store, its own
    caches) applies to the very next tell."""
    from assay.platform.errors import ObservationError
    from assay.storage.factory import open_store

    a = Engine(sql_store)
    other = open_store(sql_store.engine.url.render_as_string(hide_password=False))
    try:
        b = Engine(other)
        exp = a.create_experiment(EXP)
        a.tell(a.ask(exp.id, 1)[0].id, OBS)  # A's caches hold version 1
        trial = a.ask(exp.id, 1)[0]
        with pytest.raises(ObservationError):
            a.tell(trial.id, {**OBS, "d": [0.3, 0.01]})  # "d" is not a metric yet
        b.update_experiment(exp.id, {"outcome_constraints": ["c <= 0.8", "d <= 1"]})
        assert a.tell(trial.id, {**OBS, "d": [0.3, 0.01]}).state.value == "completed"

        hook = b.create_webhook("https://example.com/hook", ["trial.completed"])
        with counting(sql_store) as tell:
            a.tell(a.ask(exp.id, 1)[0].id, {**OBS, "d": [0.3, 0.01]})
        assert len(b.webhook_deliveries(hook.id)) == 1
        assert len(tell) > 4, tell  # with a subscription the outbox is written
    finally:
        other.close()
