"""The dashboard's cheap reads (``latest_event_id``, ``completed_observations``), run against
every backend through the parametrised ``store`` fixture."""

from __future__ import annotations

from assay.platform.experiment import ExperimentConfig, Observation, TrialState
from assay.storage.base import NewTrial, ObservationRecord

SPEC = {
    "name": "reads",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "outcome_constraints": ["c <= 1"],
    "generator": "sobol",
}


def _experiment(store, name: str):
    return store.create_experiment(ExperimentConfig.from_dict({**SPEC, "name": name}))


def _add(store, exp_id: int, *xs: float):
    with store.lock_experiment(exp_id) as lock:
        n = len(lock.experiment.trials)
        specs = [
            NewTrial(arms=[(f"{n + i}_0", {"x": x})], generator="manual", state=TrialState.RUNNING)
            for i, x in enumerate(xs)
        ]
        return lock.add_trials(specs, actor="test")


def _tell(store, trial, **values):
    obs = {m: Observation(m, *(v if isinstance(v, tuple) else (v,))) for m, v in values.items()}
    return store.transition_trial(
        trial.id, TrialState.COMPLETED, observations={trial.arms[0].name: obs}
    )


def test_latest_event_id_tracks_the_audit_trail(store) -> None:
    a, b = _experiment(store, "a"), _experiment(store, "b")
    assert store.latest_event_id() == 0
    assert store.latest_event_id(experiment_id=a.id) == 0
    [t] = _add(store, a.id, 0.5)
    first = store.latest_event_id(experiment_id=a.id)
    assert first == store.list_events(experiment_id=a.id)[-1].id > 0
    _add(store, b.id, 0.1)
    assert store.latest_event_id(experiment_id=a.id) == first  # b's events do not count
    assert store.latest_event_id() == store.list_events()[-1].id > first
    _tell(store, t, y=1.0)
    after = store.latest_event_id(experiment_id=a.id)
    assert after > store.latest_event_id(experiment_id=b.id)
    assert [e.id for e in store.list_events(experiment_id=a.id, after=first)] == [after]


def test_completed_observations_reads_only_completed_trials(store) -> None:
    a, b, c = _experiment(store, "a"), _experiment(store, "b"), _experiment(store, "c")
    t0, t1, t2 = _add(store, a.id, 0.1, 0.2, 0.3)
    _tell(store, t0, y=(1.5, 0.1), c=0.5)
    _tell(store, t2, y=2.5)
    store.transition_trial(t1.id, TrialState.FAILED, reason="crashed")
    [u] = _add(store, b.id, 0.9)
    _tell(store, u, y=-1.0, c=3.0)
    _add(store, c.id, 0.4)  # running: nothing observed

    rows = store.completed_observations([b.id, a.id, c.id])
    key = [(r.experiment_id, r.trial_index) for r in rows]
    assert key == sorted(key)  # ordered by (experiment, trial index)
    assert sorted(rows, key=lambda r: (r.experiment_id, r.trial_index, r.metric)) == [
        ObservationRecord(a.id, t0.id, 0, "0_0", "c", 0.5, None),
        ObservationRecord(a.id, t0.id, 0, "0_0", "y", 1.5, 0.1),
        ObservationRecord(a.id, t2.id, 2, "2_0", "y", 2.5, None),
        ObservationRecord(b.id, u.id, 0, "0_0", "c", 3.0, None),
        ObservationRecord(b.id, u.id, 0, "0_0", "y", -1.0, None),
    ]
    only_y = store.completed_observations([a.id], metrics=["y"])
    assert [(r.trial_index, r.mean) for r in only_y] == [(0, 1.5), (2, 2.5)]
    assert store.completed_observations([]) == []
    assert store.completed_observations([c.id]) == []
