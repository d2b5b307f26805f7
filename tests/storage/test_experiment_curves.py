"""The SQL store reads an experiment's learning curves in one statement (``should_stop``
reads them after every reported step), and they equal the base rule's per-trial reads."""

from __future__ import annotations

from sqlalchemy import event

from assay.service.engine import Engine
from assay.storage.base import Store

EXP = {
    "name": "curves",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "acc",
    "generator": "sobol",
    "seed": 0,
    "early_stopping": {"strategy": "percentile", "min_curves": 2},
}


def test_curves_in_one_statement_equal_the_per_trial_reads(sql_store) -> None:
    engine = Engine(sql_store)
    exp = engine.create_experiment(EXP)
    trials = engine.ask(exp.id, 12)
    for i, t in enumerate(trials):
        for step in range(1, 4 + i % 3):
            engine.report(t.id, step, {"acc": 0.1 * i + 0.01 * step, "loss": 1.0 / step})
    engine.report(trials[0].id, None, {"acc": 0.5})  # a report without a step
    engine.tell(trials[1].id, {"acc": 0.9})
    engine.early_stop(trials[2].id, "hand-stopped")
    engine.tell(trials[3].id, {"acc": 0.2})
    engine.abandon(trials[4].id, "not needed")  # abandoned trials have no curve
    experiment = sql_store.get_experiment(exp.id)
    sent: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.split(None, 1)[0].upper() == "SELECT":
            sent.append(statement)

    event.listen(sql_store.engine, "before_cursor_execute", before)
    try:
        fast = sql_store.experiment_curves(experiment)
    finally:
        event.remove(sql_store.engine, "before_cursor_execute", before)
    slow = Store.experiment_curves(sql_store, experiment)  # the base rule: one read per trial
    assert len(sent) == 1, sent
    assert [c.trial_id for c in fast] == [c.trial_id for c in slow]
    assert [(c.points, c.finished, c.final, c.state) for c in fast] == [
        (c.points, c.finished, c.final, c.state) for c in slow
    ]
    assert len(fast) == 11 and trials[4].id not in {c.trial_id for c in fast}
    assert fast[1].finished and fast[1].final == {"acc": 0.9}
    assert fast[0].points["acc"][-1] == (4, 0.5)  # the stepless report gets step 3 + 1
