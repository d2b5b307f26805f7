"""Early stopping and experiment stopping through the client, on every backend (memory,
SQLite, PostgreSQL, HTTP): ``should_stop``, ``early_stop`` with the reason, ``stopping``,
the decision's numbers, and bad settings as typed errors naming the field (422 over HTTP)."""

from __future__ import annotations

import pytest

import assay
from assay.platform.errors import ValidationError

PARAMS = [{"name": "x", "type": "float", "bounds": [0.0, 1.0]}]
_counter = iter(range(10**6))


def make(client, **kw):
    spec = dict(name=f"es-{next(_counter)}", parameters=PARAMS, objective="acc", seed=3,
                tracking_metrics=["latency"])  # fmt: skip
    spec.update(kw)
    return client.create_experiment(**spec)


def run_curve(client, trial_id: int, values: list[float], **extra: list[float]) -> None:
    for i, v in enumerate(values):
        client.report(trial_id, i + 1, acc=v, **{k: vs[i] for k, vs in extra.items()})


def test_should_stop_percentile_then_early_stop(client) -> None:
    exp = make(client, early_stopping={"strategy": "percentile", "percentile": 50,
                                       "min_curves": 3, "min_progression": 2})  # fmt: skip
    assert exp.config.early_stopping.strategy == "percentile"
    trials = [client.attach_trial(exp.id, {"x": x}) for x in (0.1, 0.2, 0.3, 0.4, 0.5)]
    for t, level in zip(trials[:4], (0.6, 0.7, 0.8, 0.9), strict=True):
        run_curve(client, t.id, [level * s for s in (0.5, 0.8, 0.9, 1.0)])
        client.tell(t.id, {"acc": level})
    bad = trials[4]
    client.report(bad.id, 1, acc=0.05)
    d = client.should_stop(bad.id)
    assert not d.should_stop and "too early" in d.reason
    run_curve(client, bad.id, [0.05, 0.1, 0.12])
    d = client.should_stop(bad.id)
    assert d.should_stop and d.strategy == "percentile" and d.step == 3
    assert d.threshold == pytest.approx((0.7 * 0.9 + 0.8 * 0.9) / 2)
    assert d.details["curves"] == 4
    stopped = client.early_stop(bad.id, d.reason)
    assert stopped.state is assay.TrialState.EARLY_STOPPED
    assert client.get_trial(bad.id).reason == d.reason
    # A stopped trial is no longer judged; the best arm ignores it.
    assert not client.should_stop(bad.id).should_stop
    assert client.best(exp.id).parameters == {"x": 0.4}


def test_should_stop_without_settings_and_bad_settings(client) -> None:
    exp = make(client)
    [t] = client.ask(exp.id)
    d = client.should_stop(t.id)
    assert not d.should_stop and d.strategy == "none"
    with pytest.raises(ValidationError) as e:
        make(client, early_stopping={"strategy": "percentile", "percentile": 0})
    assert e.value.field == "early_stopping.percentile"
    with pytest.raises(ValidationError) as e:
        make(client, early_stopping={"strategy": "threshold", "metric": "latency", "bound": 5})
    assert e.value.field == "early_stopping.stop_when"
    with pytest.raises(ValidationError) as e:
        make(client, stopping={"rule": "improvement", "window": -1})
    assert e.value.field == "stopping.window"
    assert all(not s.name.startswith("bad") for s in client.list_experiments())


def test_stopping_flat_vs_improving(client) -> None:
    flat = make(client, stopping={"rule": "improvement", "window": 3, "min_trials": 5})
    rising = make(client, stopping={"rule": "improvement", "window": 3, "min_trials": 5})
    for i in range(7):
        t = client.attach_trial(flat.id, {"x": i / 10})
        client.tell(t.id, {"acc": (0.8 + 0.001 * (i % 2), 0.01)})
        t = client.attach_trial(rising.id, {"x": i / 10})
        client.tell(t.id, {"acc": (0.1 * i, 0.01)})
    d = client.stopping(flat.id)
    assert d.done and d.rule == "improvement" and d.details["noise"] == pytest.approx(0.01)
    d = client.stopping(rising.id)
    assert not d.done and d.details["improvement"] == pytest.approx(0.3)
