from __future__ import annotations

import math

import pytest

from assay.platform.errors import GenerationError, ValidationError
from assay.platform.generators import get_generator
from assay.platform.generators.noisy_ei import NoisyEIGenerator

SPEC_1D = {
    "name": "g",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
}


def bump(x: float) -> float:
    return math.exp(-((x - 0.3) ** 2) / 0.02)


def observed_1d(n: int = 7) -> list:
    xs = [i / (n - 1) for i in range(n)]
    return [({"x": x}, {"y": (bump(x), 0.01)}) for x in xs]


def test_unknown_generator_and_settings_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown generator 'bogus'"):
        get_generator("bogus")
    with pytest.raises(ValidationError, match="generator_settings.mc_sample"):
        get_generator("noisy_ei", {"mc_sample": 10})
    with pytest.raises(ValidationError, match="generator_settings.num_restarts"):
        get_generator("noisy_ei", {"num_restarts": 0})


def test_initial_design_is_sobol_of_default_size(build_experiment) -> None:
    spec = {
        **SPEC_1D,
        "parameters": [{"name": f"x{i}", "type": "float", "bounds": [0, 1]} for i in range(3)],
    }
    gen = NoisyEIGenerator()
    exp = build_experiment(spec)
    assert gen.n_initial(exp.search_space) == 7
    res = gen.generate(exp, 7, seed=0)
    assert [c.generator for c in res.candidates] == ["sobol"] * 7
    assert res.generator_state["sobol_consumed"] >= 7
    assert NoisyEIGenerator().n_initial(build_experiment(SPEC_1D).search_space) == 5


def test_model_takes_over_and_finds_the_bump(build_experiment) -> None:
    exp = build_experiment(SPEC_1D, observed_1d())
    res = NoisyEIGenerator().generate(exp, 1, seed=0)
    [c] = res.candidates
    assert c.generator == "noisy_ei"
    assert res.info["acquisition"] == "LogNoisyExpectedImprovement"
    assert abs(c.parameters["x"] - 0.3) < 0.12
    assert res.model_state["y"]["d"] == 1


def test_same_seed_same_data_same_proposals(build_experiment) -> None:
    a = NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 2, seed=5)
    b = NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 2, seed=5)
    assert [c.parameters for c in a.candidates] == [c.parameters for c in b.candidates]


def test_ask_runs_single_threaded_and_restores_torch_threads(build_experiment, monkeypatch) -> None:
    import torch

    from assay.platform import optimize

    before = torch.get_num_threads()
    seen: list[int] = []
    real = optimize.optimize_acquisition

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr("assay.platform.generators.noisy_ei.optimize_acquisition", spy)
    NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 1, seed=0)
    assert seen == [1] and torch.get_num_threads() == before
    NoisyEIGenerator({"torch_threads": None}).generate(
        build_experiment(SPEC_1D, observed_1d()), 1, seed=0
    )
    assert seen[-1] == before and torch.get_num_threads() == before
    with optimize.intra_op_threads(1), optimize.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_pending_points_are_passed_to_the_acquisition(build_experiment) -> None:
    """A running trial at the EI maximiser must make that point (nearly) worthless."""
    import torch

    free = NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 1, seed=0)
    x_star = free.candidates[0].parameters["x"]
    busy = build_experiment(SPEC_1D, observed_1d(), pending=[{"x": x_star}])
    res = NoisyEIGenerator().generate(busy, 1, seed=0)
    assert res.candidates[0].parameters["x"] != x_star
    # compare the acquisition at x* with and without the pending point
    from assay.platform.models import fit_outcome_models, training_data

    data = training_data(busy)
    fitted = fit_outcome_models(data, ["y"], seed=0)
    gen, X = NoisyEIGenerator(), torch.tensor([[[x_star]]], dtype=torch.double)
    base = data["y"].X
    no_pending = gen.build_acquisition(busy, fitted, base, None, 0, {})(X).item()
    with_pending = gen.build_acquisition(busy, fitted, base, X[0], 0, {})(X).item()
    assert with_pending < no_pending - 2.0  # log-EI: > 7x smaller


@pytest.mark.slow
def test_batch_is_distinct_and_within_constraints(build_experiment) -> None:
    spec = {
        "name": "b",
        "parameters": [
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "y", "type": "float", "bounds": [0, 1]},
        ],
        "parameter_constraints": ["x + y <= 1"],
        "objective": "f",
    }
    obs = []
    for i in range(8):
        x, y = (i * 0.37) % 0.6, (i * 0.61) % 0.4
        obs.append(({"x": x, "y": y}, {"f": -((x - 0.5) ** 2) - (y - 0.4) ** 2}))
    res = NoisyEIGenerator().generate(build_experiment(spec, obs), 3, seed=1)
    pts = [c.parameters for c in res.candidates]
    assert len({(p["x"], p["y"]) for p in pts}) == 3
    for p in pts:
        assert 0 <= p["x"] <= 1 and 0 <= p["y"] <= 1
        assert p["x"] + p["y"] <= 1 + 1e-6


def test_mixed_space_proposals_are_valid(build_experiment) -> None:
    spec = {
        "name": "mix",
        "parameters": [
            {"name": "lr", "type": "float", "bounds": [1e-4, 1e-1], "log": True},
            {"name": "layers", "type": "int", "bounds": [1, 6]},
            {"name": "opt", "type": "choice", "values": ["adam", "sgd", "lamb"]},
        ],
        "objective": "acc",
    }
    obs = []
    for i, opt in enumerate(["adam", "sgd", "lamb"] * 3):
        lr, layers = 10 ** (-4 + 3 * ((i * 0.618) % 1)), 1 + (i * 5) % 6
        acc = -((math.log10(lr) + 2.5) ** 2) + 0.1 * layers + (0.3 if opt == "lamb" else 0)
        obs.append(({"lr": lr, "layers": layers, "opt": opt}, {"acc": acc}))
    exp = build_experiment(spec, obs)
    res = NoisyEIGenerator().generate(exp, 2, seed=0)
    for c in res.candidates:
        assert exp.search_space.validate(c.parameters) == c.parameters
        assert isinstance(c.parameters["layers"], int)
        assert c.generator == "noisy_ei"


def test_nothing_feasible_searches_for_feasibility(build_experiment) -> None:
    spec = {**SPEC_1D, "outcome_constraints": ["c <= 0"]}
    obs = [({"x": x}, {"y": bump(x), "c": (1.0 - x, 0.01)}) for x in (0.0, 0.2, 0.4, 0.6, 0.7)]
    for analytic, name in (
        (True, "LogProbabilityOfFeasibility"),
        (False, "qLogProbabilityOfFeasibility"),
    ):
        gen = NoisyEIGenerator({"analytic": analytic})
        res = gen.generate(build_experiment(spec, obs), 1, seed=0)
        assert res.info["acquisition"] == name
        assert res.candidates[0].parameters["x"] > 0.8  # c(x) = 1 - x <= 0 only near x = 1
    # once a feasible arm exists, NEI with the constraint takes over
    obs.append(({"x": 1.0}, {"y": bump(1.0), "c": (0.0 - 0.05, 0.01)}))
    res = NoisyEIGenerator().generate(build_experiment(spec, obs), 1, seed=0)
    assert res.info["acquisition"] == "LogNoisyExpectedImprovement"


def test_discrete_space_deduplicates_and_reports_exhaustion(build_experiment) -> None:
    spec = {**SPEC_1D, "parameters": [{"name": "k", "type": "int", "bounds": [0, 5]}]}
    obs = [({"k": k}, {"y": -((k - 2) ** 2)}) for k in (0, 1, 2, 3, 4)]
    gen = NoisyEIGenerator({"n_initial": 2})
    res = gen.generate(build_experiment(spec, obs), 1, seed=0)
    assert res.candidates[0].parameters == {"k": 5}
    obs.append(({"k": 5}, {"y": -9}))
    with pytest.raises(GenerationError, match="exhausted"):
        gen.generate(build_experiment(spec, obs), 1, seed=0)


def test_model_fit_failure_falls_back_to_sobol(build_experiment, monkeypatch) -> None:
    import assay.platform.models as models

    def broken(*args, **kwargs):
        raise RuntimeError("cholesky failed")

    monkeypatch.setattr(models, "fit_gpytorch_mll", broken)
    monkeypatch.setattr(models, "build_gp", broken)  # every fit attempt fails
    res = NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 2, seed=0)
    assert [c.generator for c in res.candidates] == ["sobol", "sobol"]
    assert "fallback" in res.info


def test_failed_mll_fits_still_give_model_based_proposals(build_experiment, monkeypatch) -> None:
    """A fit that never converges is retried down to the prior hyperparameters: the ask stays
    model-based (and says so in fit_warnings) instead of dropping to Sobol."""
    import assay.platform.models as models

    def broken(mll, **kwargs):
        raise RuntimeError("cholesky failed")

    monkeypatch.setattr(models, "fit_gpytorch_mll", broken)
    res = NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 1, seed=0)
    assert [c.generator for c in res.candidates] == ["noisy_ei"]
    assert any("prior hyperparameters" in w for w in res.info["fit_warnings"])


def test_sobol_generator_continues_its_sequence(build_experiment) -> None:
    gen = get_generator("sobol")
    exp = build_experiment(SPEC_1D)
    first = gen.generate(exp, 3, seed=0)
    exp.generator_state = first.generator_state
    second = gen.generate(exp, 3, seed=0)
    xs = [c.parameters["x"] for c in first.candidates + second.candidates]
    assert len(set(xs)) == 6


def test_acquisition_failure_falls_back_to_valid_sobol_points(monkeypatch) -> None:
    """A numerical failure inside acquisition optimization (here a NotPSDError injected at the
    BoTorch call) never crashes the ask: it returns in-bounds, constraint-respecting, new
    Sobol points, and the fallback is visible in the trials and the generator state."""
    from gpytorch.utils.errors import NotPSDError

    import assay
    import assay.platform.generators.noisy_ei as noisy_ei

    client = assay.Client()
    exp = client.create_experiment(
        name="fallback",
        parameters=[
            {"name": "x", "type": "float", "bounds": [0, 1]},
            {"name": "y", "type": "float", "bounds": [0, 2]},
        ],
        parameter_constraints=["x + y <= 1.5"],
        objective="f",
        generator_settings={"n_initial": 4},
        seed=3,
    )
    for t in client.ask(exp.id, n=4):
        p = t.parameters
        client.tell(t.id, {"f": -((p["x"] - 0.3) ** 2) - (p["y"] - 0.5) ** 2})

    def not_psd(*args, **kwargs):
        raise NotPSDError("Matrix not positive definite after repeatedly adding jitter")

    monkeypatch.setattr(noisy_ei, "optimize_acquisition", not_psd)
    trials = client.ask(exp.id, n=3)
    seen = [tuple(t.parameters.values()) for t in client.get_experiment(exp.id).trials]
    assert len(trials) == 3 and len(set(seen)) == len(seen) == 7
    for t in trials:
        p = t.parameters
        assert 0 <= p["x"] <= 1 and 0 <= p["y"] <= 2 and p["x"] + p["y"] <= 1.5 + 1e-9
        assert t.generator == "sobol" and "NotPSDError" in t.metadata["fallback"]
    assert "NotPSDError" in trials[0].metadata["generation"]["fallback"]
    state = client.get_experiment(exp.id).generator_state
    assert state["acquisition_fallbacks"] == 1
    assert state["last_acquisition_fallback"]["trial_index"] == 4


def test_non_numerical_errors_in_acquisition_still_raise(build_experiment, monkeypatch) -> None:
    import assay.platform.generators.noisy_ei as noisy_ei

    def bug(*args, **kwargs):
        raise KeyError("a bug, not numerics")

    monkeypatch.setattr(noisy_ei, "optimize_acquisition", bug)
    with pytest.raises(KeyError):
        NoisyEIGenerator().generate(build_experiment(SPEC_1D, observed_1d()), 1, seed=0)


def _with_stopped(build_experiment, n_done: int, stopped: list[float]):
    """``n_done`` completed trials on the bump and early-stopped ones at ``stopped``."""
    from assay.platform.experiment import Arm, Trial, TrialState

    exp = build_experiment(SPEC_1D, observed_1d(n_done))
    for x in stopped:
        i = len(exp.trials)
        arm = Arm(f"{i}_0", {"x": x})
        exp.trials.append(Trial(i + 1, 1, i, [arm], TrialState.EARLY_STOPPED, "noisy_ei"))
    return exp


def test_early_stopped_view_counts_stopped_trials_as_data(build_experiment) -> None:
    from assay.platform.experiment import Observation
    from assay.platform.generators.base import initial_design_arms
    from assay.platform.models import training_data

    exp = _with_stopped(build_experiment, 3, [0.7, 0.9])
    stopped_ids = [t.id for t in exp.trials[3:]]
    view = exp.with_early_stopped_data({stopped_ids[0]: {"y": 0.01}, stopped_ids[1]: {"y": 0.02}})
    # The stored snapshot is unchanged: completed trials only, stopped ones without data.
    assert len(exp.observed()) == 3 and not exp.trials[3].observations
    assert initial_design_arms(exp) == 3
    # The view: the stopped trials are observed with the given values, in the model's data
    # and the initial design's count.
    assert len(view.observed()) == 5 and initial_design_arms(view) == 5
    assert view.trials[4].observations == {"4_0": {"y": Observation("y", 0.02)}}
    assert training_data(view)["y"].Y.flatten().tolist()[-2:] == [0.01, 0.02]
    # Values for a completed or unknown trial change nothing.
    assert len(exp.with_early_stopped_data({1: {"y": 5.0}, 99: {"y": 1.0}}).observed()) == 3


def test_early_stopped_setting_ends_the_initial_design(build_experiment) -> None:
    # 3 completed + 2 stopped with n_initial 5: excluded, the ask is still Sobol; with the
    # stopped trials as data, the model takes over.
    exp = _with_stopped(build_experiment, 3, [0.7, 0.9])
    values = {t.id: {"y": 0.0} for t in exp.trials[3:]}
    gen = get_generator("noisy_ei", {"early_stopped": "last_value"})
    assert gen.settings.early_stopped == "last_value"
    [c] = gen.generate(exp, 1, seed=0).candidates
    assert c.generator == "sobol"
    [c] = gen.generate(exp.with_early_stopped_data(values), 1, seed=0).candidates
    assert c.generator == "noisy_ei"
    with pytest.raises(ValidationError, match="generator_settings.early_stopped"):
        get_generator("noisy_ei", {"early_stopped": "impute"})
    assert get_generator("noisy_ei").settings.early_stopped == "predicted"
