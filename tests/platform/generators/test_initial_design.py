"""The initial-design rule of every model-based generator (``ModelBasedGenerator``): observed
and pending arms count toward ``n_initial`` whatever produced them (Sobol, a model, a manual,
attached or imported trial); failed, abandoned and unobserved arms do not."""

from __future__ import annotations

from typing import Any

import pytest

import assay
from assay.platform.experiment import Arm, Trial, TrialState
from assay.platform.generators import get_generator
from assay.platform.generators.base import initial_design_arms

#: Small optimizer effort, valid settings of both generators.
FAST: dict[str, dict[str, Any]] = {
    "noisy_ei": {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32},
    "multi_step": {"horizon": 2, "num_fantasies": [2], "num_restarts": 2, "raw_samples": 16,
                   "maxiter": 5},
}  # fmt: skip
MODEL_BASED = sorted(FAST)
SPEC = {
    "name": "init",
    "parameters": [{"name": n, "type": "float", "bounds": [0, 1]} for n in ("x", "y")],
    "objective": "f",
}


def f(p: dict[str, Any]) -> float:
    return -((p["x"] - 0.3) ** 2) - (p["y"] - 0.6) ** 2


def points(n: int) -> list[dict[str, float]]:
    return [{"x": (0.13 + i * 0.37) % 1, "y": (0.29 + i * 0.61) % 1} for i in range(n)]


def observed(n: int) -> list[tuple[dict[str, float], dict[str, float]]]:
    return [(p, {"f": f(p)}) for p in points(n)]


def _add(exp: Any, params: dict[str, Any], state: TrialState, generator: str) -> None:
    i = len(exp.trials)
    exp.trials.append(Trial(i + 1, 1, i, [Arm(f"{i}_0", params)], state, generator))


@pytest.mark.parametrize("name", MODEL_BASED)
def test_manual_observations_complete_the_initial_design(name: str, build_experiment) -> None:
    """n_initial completed trials that no generator proposed: the next ask is model-based."""
    gen = get_generator(name, {**FAST[name], "n_initial": 4})
    exp = build_experiment(SPEC, observed(4), generator="manual")
    assert initial_design_arms(exp) == 4
    [c] = gen.generate(exp, 1, seed=0).candidates
    assert c.generator == name
    fewer = build_experiment(SPEC, observed(3), generator="manual")
    assert [c.generator for c in gen.generate(fewer, 2, seed=0).candidates] == ["sobol", name]


@pytest.mark.parametrize("name", MODEL_BASED)
def test_pending_arms_count_and_dead_or_unobserved_arms_do_not(name: str, build_experiment) -> None:
    gen = get_generator(name, {**FAST[name], "n_initial": 4})
    exp = build_experiment(SPEC, observed(2), generator="manual")
    extra = points(8)[2:]
    _add(exp, extra[0], TrialState.FAILED, "sobol")
    _add(exp, extra[1], TrialState.ABANDONED, "sobol")
    _add(exp, extra[2], TrialState.COMPLETED, "sobol")  # completed without data
    assert initial_design_arms(exp) == 2
    assert [c.generator for c in gen.generate(exp, 2, seed=0).candidates] == ["sobol"] * 2
    # another ask's arms, still running or queued: a concurrent ask must not resample them
    _add(exp, extra[3], TrialState.RUNNING, "sobol")
    _add(exp, extra[4], TrialState.CANDIDATE, name)
    assert initial_design_arms(exp) == 4
    assert [c.generator for c in gen.generate(exp, 1, seed=0).candidates] == [name]


@pytest.mark.parametrize("name", MODEL_BASED)
def test_attached_trials_make_the_next_ask_model_based(name: str) -> None:
    """The issue's probe, through the client: attach and complete ``n_initial`` trials of
    your own (the default size, 2 d + 1 = 5 here), then ask."""
    client = assay.Client()
    exp = client.create_experiment(
        **SPEC, generator=name, generator_settings=FAST[name], seed=1
    )  # fmt: skip
    for p in points(5):
        t = client.attach_trial(exp.id, p)
        client.tell(t.id, {"f": f(p)})
    [t] = client.ask(exp.id)
    assert t.generator == name
    assert t.parameters not in points(5)


def test_thirty_attached_trials_on_six_dims_two_constraints() -> None:
    """The issue's probe at its own shape: 6 parameters, two outcome constraints, default
    ``n_initial`` (2 d + 1 = 13), 30 attached and completed trials -> the next ask is
    model-based (it was quasi-random while only Sobol arms counted)."""
    names = [f"x{i}" for i in range(6)]
    client = assay.Client()
    exp = client.create_experiment(
        name="attached6", parameters=[{"name": n, "type": "float", "bounds": [0, 1]} for n in names],
        objective={"name": "f", "minimize": True}, outcome_constraints=["c1 <= 0", "c2 <= 0"],
        generator="noisy_ei", generator_settings=FAST["noisy_ei"], seed=3,
    )  # fmt: skip
    for i in range(30):
        p = {n: (0.11 + (i + 1) * (0.37 + 0.13 * j)) % 1 for j, n in enumerate(names)}
        t = client.attach_trial(exp.id, p)
        s = sum(p.values())
        client.tell(t.id, {"f": (s - 3) ** 2, "c1": p["x0"] - 0.8, "c2": 2.0 - s})
    [t] = client.ask(exp.id)
    assert t.generator == "noisy_ei"


# --- the centre of the space as the first arm (``centre_first``) ---------------------------

MO_SPEC = {
    "name": "centre",
    "parameters": [
        {"name": "x", "type": "float", "bounds": [0, 4]},
        {"name": "k", "type": "int", "bounds": [1, 5]},
        {"name": "lr", "type": "float", "bounds": [1e-4, 1e-2], "log": True},
    ],
    "objectives": [{"name": "f"}, {"name": "g"}],
}
FAST_EHVI = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32}


def test_centre_candidate_is_the_midpoint_in_each_parameters_scale() -> None:
    from assay.platform.experiment import ExperimentConfig
    from assay.platform.generators.base import centre_candidate

    space = ExperimentConfig.from_dict({"seed": 0, **MO_SPEC}).search_space
    c = centre_candidate(space, set())
    assert c is not None and c.generator == "centre"
    assert c.parameters["x"] == pytest.approx(2.0) and c.parameters["k"] == 3
    assert c.parameters["lr"] == pytest.approx(1e-3)  # geometric mean of a log range
    assert centre_candidate(space, {space.signature(c.parameters)}) is None  # an existing arm


@pytest.mark.parametrize("name", ["noisy_ehvi", "parego"])
def test_multi_objective_design_opens_with_the_centre_then_sobol(
    name: str, build_experiment
) -> None:
    exp = build_experiment(MO_SPEC)
    gen = get_generator(name, FAST_EHVI)
    res = gen.generate(exp, 3, seed=0)
    assert [c.generator for c in res.candidates] == ["centre", "sobol", "sobol"]
    assert res.candidates[0].parameters["x"] == pytest.approx(2.0)
    assert res.generator_state["centre_proposed"] is True
    # once the experiment has a trial, the centre is not proposed again
    _add(exp, res.candidates[0].parameters, TrialState.RUNNING, "centre")
    nxt = gen.generate(exp, 1, seed=0).candidates
    assert [c.generator for c in nxt] == ["sobol"]
    # the setting turns it off
    off = get_generator(name, {**FAST_EHVI, "centre_first": False})
    assert [c.generator for c in off.generate(build_experiment(MO_SPEC), 2, seed=0).candidates] == [
        "sobol",
        "sobol",
    ]


def test_single_objective_design_has_no_centre_unless_asked(build_experiment) -> None:
    fast = FAST["noisy_ei"]
    default = get_generator("noisy_ei", fast).generate(build_experiment(SPEC), 2, seed=0)
    assert [c.generator for c in default.candidates] == ["sobol", "sobol"]
    on = get_generator("noisy_ei", {**fast, "centre_first": True})
    res = on.generate(build_experiment(SPEC), 2, seed=0)
    assert [c.generator for c in res.candidates] == ["centre", "sobol"]
    assert res.candidates[0].parameters == {"x": 0.5, "y": 0.5}


def test_an_infeasible_centre_is_skipped(build_experiment) -> None:
    spec = {**SPEC, "parameter_constraints": ["x + y <= 0.5"]}
    on = get_generator("noisy_ei", {**FAST["noisy_ei"], "centre_first": True})
    res = on.generate(build_experiment(spec), 2, seed=0)
    assert [c.generator for c in res.candidates] == ["sobol", "sobol"]
    assert all(c.parameters["x"] + c.parameters["y"] <= 0.5 for c in res.candidates)
