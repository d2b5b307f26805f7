"""The in-process client: the verbs of the issue's example, errors that change nothing."""

from __future__ import annotations

import math
import threading

import pytest

import assay
from assay.platform.errors import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ObservationError,
    SearchSpaceError,
)

PARAMS = [
    {"name": "lr", "type": "float", "bounds": [1e-5, 1e-1], "log": True},
    {"name": "layers", "type": "int", "bounds": [1, 8]},
    {"name": "opt", "type": "choice", "values": ["adam", "sgd"]},
]


@pytest.fixture
def memory_client() -> assay.Client:
    return assay.Client()


def make(memory_client: assay.Client, **kw):
    spec = dict(
        name="demo",
        parameters=PARAMS,
        objective="accuracy",
        outcome_constraints=["latency_ms <= 20"],
        parameter_constraints=[],
        generator="noisy_ei",
        seed=0,
    )
    spec.update(kw)
    return memory_client.create_experiment(**spec)


def test_issue_example(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    trials = memory_client.ask(exp.id, n=2)
    assert len(trials) == 2
    assert {t.state for t in trials} == {assay.TrialState.RUNNING}
    assert set(trials[0].parameters) == {"lr", "layers", "opt"}
    done = memory_client.tell(trials[0].id, {"accuracy": (0.91, 0.01), "latency_ms": 18.3})
    assert done.state is assay.TrialState.COMPLETED
    assert done.values["accuracy"].sem == 0.01 and done.values["latency_ms"].sem is None
    failed = memory_client.fail(trials[1].id, reason="OOM")
    assert failed.state is assay.TrialState.FAILED and failed.reason == "OOM"
    best = memory_client.best(exp.id)
    assert best.parameters == trials[0].parameters
    assert "accuracy" in best.estimates


def test_typed_helpers_equal_dict_form(memory_client: assay.Client) -> None:
    a = make(memory_client, name="a")
    b = make(
        memory_client,
        name="b",
        parameters=[
            assay.Float("lr", 1e-5, 1e-1, log=True),
            assay.Int("layers", 1, 8),
            assay.Choice("opt", ["adam", "sgd"]),
        ],
    )
    assert a.search_space.to_dict() == b.search_space.to_dict()


@pytest.mark.parametrize(
    ("obs", "exc", "fragment"),
    [
        ({"acc": 0.9}, ObservationError, "unknown metric 'acc'"),
        ({"accuracy": math.nan}, ObservationError, "finite"),
        ({"accuracy": math.inf}, ObservationError, "finite"),
        ({"accuracy": (0.9, -0.1)}, ObservationError, ">= 0"),
        ({"accuracy": "high"}, ObservationError, "number"),
        ({}, ObservationError, "non-empty"),
    ],
)
def test_bad_tell_changes_nothing(memory_client: assay.Client, obs, exc, fragment) -> None:
    exp = make(memory_client)
    [t] = memory_client.ask(exp.id)
    before = memory_client.get_trial(t.id)
    events_before = len(memory_client.events(exp.id))
    with pytest.raises(exc, match=fragment):
        memory_client.tell(t.id, {**obs, "latency_ms": 3.0} if obs else obs)
    after = memory_client.get_trial(t.id)
    assert after.state == before.state == assay.TrialState.RUNNING
    assert after.observations == {}
    assert len(memory_client.events(exp.id)) == events_before


def test_tell_twice_is_a_conflict_and_keeps_first_values(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    [t] = memory_client.ask(exp.id)
    memory_client.tell(t.id, {"accuracy": 0.5})
    with pytest.raises(InvalidTransitionError, match="already told"):
        memory_client.tell(t.id, {"accuracy": 0.9})
    assert memory_client.get_trial(t.id).values["accuracy"].mean == 0.5
    with pytest.raises(InvalidTransitionError):
        memory_client.fail(t.id)


def test_bad_experiment_definitions(memory_client: assay.Client) -> None:
    with pytest.raises(SearchSpaceError, match="'lr'.*positive"):
        make(
            memory_client,
            parameters=[{"name": "lr", "type": "float", "bounds": [0, 1], "log": True}],
        )
    with pytest.raises(assay.ValidationError, match="unknown generator"):
        make(memory_client, generator="tpe")
    make(memory_client)
    with pytest.raises(ConflictError, match="already exists"):
        make(memory_client)
    assert len(memory_client.list_experiments()) == 1


def test_not_found(memory_client: assay.Client) -> None:
    with pytest.raises(NotFoundError):
        memory_client.ask(12345)
    with pytest.raises(NotFoundError):
        memory_client.tell(999, {"accuracy": 1.0})
    with pytest.raises(KeyError):  # NotFoundError is also a KeyError
        memory_client.get_trial(999)


def test_idempotent_ask_returns_the_same_trials(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    a = memory_client.ask(exp.id, n=2, idempotency_key="req-1")
    b = memory_client.ask(exp.id, n=2, idempotency_key="req-1")
    assert [t.id for t in a] == [t.id for t in b]
    assert len(memory_client.trials(exp.id)) == 2
    c = memory_client.ask(exp.id, n=1, idempotency_key="req-2")
    assert c[0].id not in {t.id for t in a}


def test_budget_and_status(memory_client: assay.Client) -> None:
    exp = make(memory_client, max_trials=3)
    assert len(memory_client.ask(exp.id, n=5)) == 3
    with pytest.raises(ConflictError, match="budget"):
        memory_client.ask(exp.id)
    exp2 = make(memory_client, name="paused")
    memory_client.set_status(exp2.id, "paused")
    with pytest.raises(ConflictError, match="paused"):
        memory_client.ask(exp2.id)


def test_attach_trial_validates(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    t = memory_client.attach_trial(exp.id, {"lr": 1e-3, "layers": 2, "opt": "sgd"})
    assert t.generator == "manual"
    with pytest.raises(SearchSpaceError):
        memory_client.attach_trial(exp.id, {"lr": 1e-3, "layers": 20, "opt": "sgd"})


def test_arms_are_reused_by_parameters(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    p = {"lr": 1e-3, "layers": 2, "opt": "sgd"}
    a = memory_client.attach_trial(exp.id, p)
    b = memory_client.attach_trial(exp.id, p)
    assert a.arm.name == b.arm.name == "0_0"


def test_concurrent_asks_never_duplicate(memory_client: assay.Client) -> None:
    exp = make(memory_client, generator="sobol")
    out: list = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            ts = memory_client.ask(exp.id, n=2)
            with lock:
                out.extend(ts)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    trials = memory_client.trials(exp.id)
    assert len(trials) == 40
    assert sorted(t.index for t in trials) == list(range(40))
    assert len({tuple(sorted(t.parameters.items())) for t in trials}) == 40


def test_audit_trail(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    [t] = memory_client.ask(exp.id)
    memory_client.tell(t.id, {"accuracy": 0.7})
    events = memory_client.events(exp.id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, assay.TrialState.RUNNING),
        (assay.TrialState.RUNNING, assay.TrialState.COMPLETED),
    ]
    assert all(e.actor == "client" for e in events)


def test_returned_objects_are_snapshots(memory_client: assay.Client) -> None:
    exp = make(memory_client)
    [t] = memory_client.ask(exp.id)
    t.parameters["lr"] = 123.0
    assert memory_client.get_trial(t.id).parameters["lr"] != 123.0


def noisy_branin(x1: float, x2: float) -> float:
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


@pytest.mark.slow
def test_noisy_ei_beats_quasi_random_on_branin() -> None:
    """Behaviour, not just execution: on noisy Branin, 20 evaluations of noisy_ei reach a
    better true value than 20 Sobol points (fixed seeds, so this is deterministic)."""
    import random

    results = {}
    for generator in ("noisy_ei", "sobol"):
        memory_client, rng = assay.Client(), random.Random(0)
        exp = memory_client.create_experiment(
            name=generator,
            parameters=[
                {"name": "x1", "type": "float", "bounds": [-5, 10]},
                {"name": "x2", "type": "float", "bounds": [0, 15]},
            ],
            objective={"name": "branin", "minimize": True},
            generator=generator,
            seed=1,
        )
        best_true = math.inf
        for _ in range(20):
            [t] = memory_client.ask(exp.id)
            f = noisy_branin(t.parameters["x1"], t.parameters["x2"])
            best_true = min(best_true, f)
            memory_client.tell(t.id, {"branin": (f + rng.gauss(0, 1.0), 1.0)})
        results[generator] = best_true
    assert results["noisy_ei"] < 1.5  # global minimum 0.398
    assert results["noisy_ei"] < results["sobol"]
