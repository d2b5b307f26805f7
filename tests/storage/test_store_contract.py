"""The storage contract, written once and run against every backend (memory, SQLite,
PostgreSQL) through the parametrised ``store`` fixture."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from assay.platform.errors import ConflictError, InvalidTransitionError, NotFoundError
from assay.platform.experiment import (
    ExperimentConfig,
    ExperimentStatus,
    Observation,
    TrialState,
)
from assay.service.engine import Engine
from assay.storage.base import NewTrial

SPEC = {
    "name": "exp",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 1]},
        {"name": "k", "type": "choice", "values": ["a", "b"]},
    ],
    "objective": "y",
    "outcome_constraints": ["c <= 1"],
    "seed": 3,
    "generator": "sobol",
}


def config(**patch) -> ExperimentConfig:
    return ExperimentConfig.from_dict({**SPEC, **patch})


def add(store, exp_id, *params, state=TrialState.RUNNING, key=None, **kw):
    with store.lock_experiment(exp_id) as lock:
        n = len(lock.experiment.trials)
        specs = [
            NewTrial(arms=[(f"{n + i}_0", p)], generator="manual", state=state)
            for i, p in enumerate(params)
        ]
        return lock.add_trials(specs, idempotency_key=key, actor="test", **kw)


def test_experiment_round_trip(store) -> None:
    exp = store.create_experiment(config(), project="p1")
    again = store.get_experiment(exp.id)
    assert again.config.to_dict() == config().to_dict()
    assert again.project == "p1" and again.status is ExperimentStatus.ACTIVE
    assert again.trials == [] and again.generator_state == {}
    assert again.created_at.tzinfo is not None


def test_duplicate_name_conflicts_per_project(store) -> None:
    store.create_experiment(config(), project="p1")
    with pytest.raises(ConflictError):
        store.create_experiment(config(), project="p1")
    store.create_experiment(config(), project="p2")  # other project: fine
    assert {s.project for s in store.list_experiments()} == {"p1", "p2"}
    assert [s.project for s in store.list_experiments(project="p2")] == ["p2"]


def test_projects_do_not_see_each_other(store) -> None:
    exp = store.create_experiment(config(), project="p1")
    [t] = add(store, exp.id, {"x": 0.5, "k": "a"})
    with pytest.raises(NotFoundError):
        store.get_experiment(exp.id, project="p2")
    with pytest.raises(NotFoundError):
        store.get_trial(t.id, project="p2")
    with pytest.raises(NotFoundError):
        store.transition_trial(t.id, TrialState.FAILED, project="p2")
    with pytest.raises(NotFoundError), store.lock_experiment(exp.id, project="p2"):
        pass
    assert store.get_trial(t.id).state is TrialState.RUNNING


def test_trials_arms_and_state(store) -> None:
    exp = store.create_experiment(config())
    t0, t1 = add(
        store, exp.id, {"x": 0.1, "k": "a"}, {"x": 0.2, "k": "b"},
        generator_state={"sobol_consumed": 2}, model_state={"y": {"d": 3}},
    )  # fmt: skip
    assert (t0.index, t1.index) == (0, 1)
    assert t0.parameters == {"x": 0.1, "k": "a"} and t0.arm.name == "0_0"
    # an arm re-used by a later trial is the same arm
    with store.lock_experiment(exp.id) as lock:
        [t2] = lock.add_trials([NewTrial(arms=[("0_0", {"x": 0.1, "k": "a"})], generator="m")])
    assert t2.index == 2 and t2.arm.name == "0_0"
    snap = store.get_experiment(exp.id)
    assert [t.index for t in snap.trials] == [0, 1, 2]
    assert snap.generator_state == {"sobol_consumed": 2}
    assert snap.model_state == {"y": {"d": 3}}


def test_multi_arm_trial_round_trip(store) -> None:
    exp = store.create_experiment(config())
    with store.lock_experiment(exp.id) as lock:
        [t] = lock.add_trials(
            [
                NewTrial(
                    arms=[("status_quo", {"x": 0.5, "k": "a"}), ("0_1", {"x": 0.9, "k": "b"})],
                    generator="batch",
                )
            ]
        )
    obs = {
        "status_quo": {"y": Observation("y", 1.0, 0.1, 1000)},
        "0_1": {"y": Observation("y", 1.2, 0.1, 990), "c": Observation("c", 0.3)},
    }
    done = store.transition_trial(t.id, TrialState.COMPLETED, observations=obs)
    assert [a.name for a in done.arms] == ["status_quo", "0_1"]
    assert done.observations == obs


def test_idempotency_key(store) -> None:
    exp = store.create_experiment(config())
    first = add(store, exp.id, {"x": 0.1, "k": "a"}, key="abc")
    with store.lock_experiment(exp.id) as lock:
        again = lock.trials_for_key("abc")
        assert lock.trials_for_key("other") is None
    assert [t.id for t in again] == [t.id for t in first]


def test_complete_stores_observations_and_events(store) -> None:
    exp = store.create_experiment(config())
    [t] = add(store, exp.id, {"x": 0.1, "k": "a"})
    obs = {"0_0": {"y": Observation("y", 2.0, 0.5, 10), "c": Observation("c", 0.1)}}
    done = store.transition_trial(t.id, TrialState.COMPLETED, observations=obs, actor="alice")
    assert done.state is TrialState.COMPLETED and done.values["y"] == Observation("y", 2.0, 0.5, 10)
    events = store.list_events(experiment_id=exp.id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, TrialState.RUNNING),
        (TrialState.RUNNING, TrialState.COMPLETED),
    ]
    assert events[1].actor == "alice" and events[1].at.tzinfo is not None
    assert store.list_events(experiment_id=exp.id, after=events[0].id) == events[1:]
    assert store.list_events(trial_id=t.id) == events


def test_invalid_transition_stores_nothing(store) -> None:
    exp = store.create_experiment(config())
    [t] = add(store, exp.id, {"x": 0.1, "k": "a"})
    store.transition_trial(
        t.id, TrialState.COMPLETED, observations={"0_0": {"y": Observation("y", 1.0)}}
    )
    n_events = len(store.list_events(experiment_id=exp.id))
    with pytest.raises(InvalidTransitionError):
        store.transition_trial(
            t.id, TrialState.COMPLETED, observations={"0_0": {"y": Observation("y", 9.0)}}
        )
    with pytest.raises(InvalidTransitionError):
        store.transition_trial(t.id, TrialState.RUNNING, expected_states=[TrialState.CANDIDATE])
    assert store.get_trial(t.id).values["y"].mean == 1.0
    assert len(store.list_events(experiment_id=exp.id)) == n_events


def test_concurrent_completion_has_one_winner(store) -> None:
    exp = store.create_experiment(config())
    [t] = add(store, exp.id, {"x": 0.1, "k": "a"})
    results: list = []

    def complete(v: float) -> None:
        try:
            store.transition_trial(
                t.id, TrialState.COMPLETED, observations={"0_0": {"y": Observation("y", v)}}
            )
            results.append(v)
        except InvalidTransitionError:
            results.append("lost")

    threads = [threading.Thread(target=complete, args=(float(i),)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winners = [r for r in results if r != "lost"]
    assert len(winners) == 1
    assert store.get_trial(t.id).values["y"].mean == winners[0]
    completions = [
        e for e in store.list_events(trial_id=t.id) if e.to_state is TrialState.COMPLETED
    ]
    assert len(completions) == 1


def test_concurrent_asks_make_unique_trials(store) -> None:
    engine = Engine(store)
    exp = engine.create_experiment({**SPEC, "name": "conc"})
    errors: list = []

    def worker() -> None:
        try:
            for _ in range(4):
                engine.ask(exp.id, 2)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    trials = store.list_trials(exp.id)
    assert sorted(t.index for t in trials) == list(range(32))
    assert len({(t.parameters["x"], t.parameters["k"]) for t in trials}) == 32


def test_list_and_count_trials(store) -> None:
    exp = store.create_experiment(config())
    ts = add(store, exp.id, *({"x": i / 10, "k": "a"} for i in range(7)))
    store.transition_trial(ts[2].id, TrialState.FAILED, reason="boom")
    assert store.count_trials(exp.id) == 7
    assert store.count_trials(exp.id, states=[TrialState.FAILED]) == 1
    page = store.list_trials(exp.id, offset=2, limit=3)
    assert [t.index for t in page] == [2, 3, 4]
    [failed] = store.list_trials(exp.id, states=[TrialState.FAILED])
    assert failed.reason == "boom"


def test_status(store) -> None:
    exp = store.create_experiment(config())
    assert (
        store.set_experiment_status(exp.id, ExperimentStatus.PAUSED).status
        is ExperimentStatus.PAUSED
    )
    assert store.list_experiments(status=ExperimentStatus.PAUSED)[0].id == exp.id
    assert store.list_experiments(status=ExperimentStatus.ACTIVE) == []


def test_heartbeat_and_reaper(store) -> None:
    exp = store.create_experiment(config())
    now = datetime.now(UTC)
    a, b, c = add(store, exp.id, *({"x": i / 10, "k": "b"} for i in range(3)))
    store.heartbeat(a.id, now - timedelta(seconds=5))  # expired
    store.heartbeat(b.id, now + timedelta(minutes=5))  # alive
    # c has no lease: never reaped
    reaped = store.reap_expired_leases(now)
    assert [t.id for t in reaped] == [a.id]
    assert store.get_trial(a.id).state is TrialState.FAILED
    assert "lease expired" in store.get_trial(a.id).reason
    assert store.get_trial(b.id).state is TrialState.RUNNING
    assert store.get_trial(c.id).state is TrialState.RUNNING
    assert store.list_events(trial_id=a.id)[-1].actor == "reaper"
    assert store.reap_expired_leases(now) == []
    with pytest.raises(InvalidTransitionError):
        store.heartbeat(a.id, now + timedelta(minutes=1))


def test_lease_round_trips_as_utc(store) -> None:
    exp = store.create_experiment(config())
    lease = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with store.lock_experiment(exp.id) as lock:
        [t] = lock.add_trials(
            [NewTrial(arms=[("0_0", {"x": 0.3, "k": "a"})], generator="m",
                      state=TrialState.RUNNING, lease_expires_at=lease)]
        )  # fmt: skip
    assert store.get_trial(t.id).lease_expires_at == lease


def test_api_keys_and_projects(store) -> None:
    store.add_api_key("team-a", "h" * 64, name="ci", prefix="assay_ab")
    store.ensure_project("team-b")
    store.ensure_project("team-b")
    assert store.project_for_key("h" * 64) == "team-a"
    assert store.project_for_key("x" * 64) is None
    assert {"team-a", "team-b"} <= set(store.list_projects())


def test_projects_create_get_and_count(store) -> None:
    created = store.create_project("team-c")
    assert (created.name, created.experiment_count) == ("team-c", 0)
    assert created.created_at is not None and created.created_at.tzinfo is not None
    with pytest.raises(ConflictError) as e:
        store.create_project("team-c")
    assert e.value.field == "name"
    store.create_experiment(config(), project="team-c")
    store.create_experiment(config(name="other"), project="team-c")
    store.create_experiment(config(), project="team-d")  # created implicitly
    assert store.get_project("team-c").experiment_count == 2
    by_name = {p.name: p.experiment_count for p in store.project_summaries()}
    assert by_name["team-c"] == 2 and by_name["team-d"] == 1
    assert [p.name for p in store.project_summaries()] == sorted(by_name)
    assert [p.name for p in store.project_summaries(name="team-d")] == ["team-d"]
    assert store.project_summaries(name="nope") == []
    with pytest.raises(NotFoundError):
        store.get_project("nope")
    assert set(store.list_projects()) == set(by_name)
