"""Several objectives: non-domination, hypervolume, the Pareto report, qLogNEHVI's
preferences (a point enlarging the front, pending points), constraints and relative
objectives. Tiny data and optimizer budgets: the tests exercise the real BoTorch parts."""

from __future__ import annotations

import itertools

import pytest
import torch

from assay.platform.errors import ValidationError
from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Observation,
    Trial,
    TrialState,
)
from assay.platform.generators import get_generator
from assay.platform.models import fit_outcome_models, training_data
from assay.platform.pareto import hypervolume, infer_reference_point, is_non_dominated
from assay.platform.pareto_report import pareto_report
from assay.platform.relative import model_thresholds

FAST = {"num_restarts": 1, "raw_samples": 16, "mc_samples": 16, "n_initial": 4}
PARAMS = [
    {"name": "x0", "type": "float", "bounds": [0.0, 1.0]},
    {"name": "x1", "type": "float", "bounds": [0.0, 1.0]},
]


def brute_force_hv_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by maximized 2-D points above ``ref``, by inclusion on a fine grid of
    the exact breakpoints (a sweep independent of the box decomposition)."""
    pts = [p for p in points if p[0] > ref[0] and p[1] > ref[1]]
    xs = sorted({ref[0], *(p[0] for p in pts)})
    area = 0.0
    for a, b in itertools.pairwise(xs):
        # height over (a, b]: best f2 among points with f1 >= b
        h = max((p[1] for p in pts if p[0] >= b), default=ref[1])
        area += (b - a) * (h - ref[1])
    return area


def test_non_dominated_and_hypervolume_match_brute_force() -> None:
    g = torch.Generator().manual_seed(3)
    Y = torch.rand(30, 2, generator=g, dtype=torch.float64)
    nd = is_non_dominated(Y)
    for i in range(30):  # a front point is dominated by none; every other point by some
        dominated = any(
            bool((Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any()) for j in range(30) if j != i
        )
        assert bool(nd[i]) == (not dominated)
    ref = torch.tensor([0.1, 0.2], dtype=torch.float64)
    expected = brute_force_hv_2d([tuple(r) for r in Y.tolist()], (0.1, 0.2))
    assert hypervolume(Y, ref) == pytest.approx(expected, rel=1e-9)
    assert hypervolume(Y[nd], ref) == pytest.approx(expected, rel=1e-9)
    # the inferred reference point lies 10% of the range below the front's nadir
    front = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert infer_reference_point(front).tolist() == pytest.approx([-0.1, -0.2])


def _experiment(
    values: list[tuple[dict, dict]],
    *,
    objectives: list | None = None,
    constraints: list[str] = (),
    generator: str = "noisy_ehvi",
) -> Experiment:
    spec = {
        "name": "mo",
        "seed": 0,
        "parameters": PARAMS,
        "objectives": objectives or ["f1", "f2"],
        "outcome_constraints": list(constraints),
        "generator": generator,
        "generator_settings": FAST,
    }
    config = ExperimentConfig.from_dict(spec)
    exp = Experiment(id=1, config=config)
    for i, (params, obs) in enumerate(values):
        arm = Arm(f"{i}_0", params)
        o = {m: Observation(m, v, 1e-3) for m, v in obs.items()}
        exp.trials.append(Trial(i + 1, 1, i, [arm], TrialState.COMPLETED, "sobol", {arm.name: o}))
    return exp


def _known_front(n: int = 10, with_c: bool = False) -> list[tuple[dict, dict]]:
    """Maximize ``f1 = x0`` and ``f2 = 1 - x0^2 - 0.5 x1``: the front is ``x1 = 0``."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64).tolist()
    X[0][1] = X[1][1] = 0.0  # two points exactly on the front
    out = []
    for x0, x1 in X:
        obs = {"f1": x0, "f2": 1 - x0**2 - 0.5 * x1}
        if with_c:
            obs["c"] = x0
        out.append(({"x0": x0, "x1": x1}, obs))
    return out


def test_pareto_report_front_is_non_dominated_and_hypervolume_is_exact() -> None:
    values = _known_front()
    exp = _experiment(
        values,
        objectives=[{"name": "f1", "threshold": 0.0}, {"name": "f2", "threshold": -0.5}],
    )
    rep = pareto_report(exp)
    assert rep.model_based
    obs = {f"{i}_0": (o["f1"], o["f2"]) for i, (_, o) in enumerate(values)}
    front = [obs[a] for a in rep.observed_front]
    for p in front:  # nothing observed dominates a front point
        assert not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in obs.values())
    # ... and every non-front point is dominated by a front point
    for a, p in obs.items():
        if a not in rep.observed_front:
            assert any(q[0] >= p[0] and q[1] >= p[1] for q in front)
    expected = brute_force_hv_2d(list(obs.values()), (0.0, -0.5))
    assert rep.observed_hypervolume == pytest.approx(expected, rel=1e-9)
    assert rep.hypervolume == pytest.approx(expected, rel=0.05)  # posterior means, tiny noise
    assert rep.reference_point == {
        "f1": {"value": 0.0, "inferred": False},
        "f2": {"value": -0.5, "inferred": False},
    }
    # the exactly-on-front arms are on the model front, with high P(on the front)
    by = {a.arm_name: a for a in rep.arms}
    assert by["0_0"].on_front and by["1_0"].on_front
    assert by["0_0"].probability_front > 0.5
    # the trace is non-decreasing and ends at the final hypervolume
    hv = [p.observed for p in rep.trace]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(hv))
    assert hv[-1] == pytest.approx(rep.observed_hypervolume)
    assert len(rep.trace) == len(values)


def test_report_rejects_single_objective() -> None:
    exp = _experiment(_known_front(4), objectives=["f1"], generator="noisy_ei")
    with pytest.raises(ValidationError) as e:
        pareto_report(exp)
    assert e.value.field == "objectives"


def test_constraints_exclude_infeasible_arms_from_the_front() -> None:
    # c = x0 <= 0.5: the arms with the largest f1 are infeasible
    values = _known_front(12, with_c=True)
    exp = _experiment(values, constraints=["c <= 0.5"])
    rep = pareto_report(exp)
    for a in rep.arms:
        x0 = a.parameters["x0"]
        if x0 > 0.55:
            assert not a.on_front and not a.on_observed_front, a
            assert a.probability_front < 0.05
    assert rep.front and all(
        next(a for a in rep.arms if a.arm_name == n).parameters["x0"] <= 0.55 for n in rep.front
    )


def _acqf(exp: Experiment, pending: list[list[float]] | None = None):
    gen = get_generator("noisy_ehvi", {**FAST, "mc_samples": 64})
    data = training_data(exp)
    fitted = fit_outcome_models(data, ["f1", "f2"])
    Xb = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
    Xp = torch.tensor(pending, dtype=torch.float64) if pending else None
    info: dict = {}
    gen._thresholds = [0.0, 0.0]
    return gen.build_acquisition(exp, fitted, Xb, Xp, 0, info), info


def _box_values() -> list[tuple[dict, dict]]:
    """Maximize ``f1 = x0``, ``f2 = x1``, observed only inside ``[0, 0.6]^2``."""
    grid = [0.05, 0.3, 0.6]
    return [({"x0": a, "x1": b}, {"f1": a, "f2": b}) for a in grid for b in grid]


@pytest.mark.slow
def test_ehvi_prefers_a_point_enlarging_the_front_and_pending_lowers_a_near_duplicate() -> None:
    exp = _experiment(_box_values())
    acqf, info = _acqf(exp)
    assert info["acquisition"] == "qLogNoisyExpectedHypervolumeImprovement"
    outside = torch.tensor([[[0.9, 0.9]]], dtype=torch.float64)
    inside = torch.tensor([[[0.2, 0.2]]], dtype=torch.float64)
    with torch.no_grad():
        v_out, v_in = float(acqf(outside)), float(acqf(inside))
    assert v_out > v_in + 1.0  # log scale: many times larger
    acqf_p, _ = _acqf(exp, pending=[[0.9, 0.9]])
    with torch.no_grad():
        v_dup = float(acqf_p(torch.tensor([[[0.89, 0.9]]], dtype=torch.float64)))
    assert v_dup < v_out - 0.5


def test_noisy_ehvi_and_parego_propose_and_search_feasibility_first() -> None:
    exp = _experiment(_box_values())
    for name, acq in (
        ("noisy_ehvi", "qLogNoisyExpectedHypervolumeImprovement"),
        ("parego", "qLogNParEGO"),
    ):
        exp.config.generator = name
        res = get_generator(name, FAST).generate(exp, 1, seed=1)
        assert len(res.candidates) == 1 and res.info["acquisition"] == acq, res.info
        assert res.candidates[0].generator == name
    assert set(res.info) >= {"scalarization_weights"}
    # every observed arm violates c >= 2: feasibility first
    values = [(p, {**o, "c": 0.0}) for p, o in _box_values()]
    exp = _experiment(values, constraints=["c >= 2"])
    res = get_generator("noisy_ehvi", FAST).generate(exp, 1, seed=1)
    assert res.info["acquisition"] == "qLogProbabilityOfFeasibility"


def test_relative_thresholds_are_converted_against_the_control() -> None:
    spec = {
        "name": "ab",
        "seed": 0,
        "parameters": PARAMS,
        "objectives": [
            {"name": "conv", "threshold": ">= -2%"},
            {"name": "latency", "minimize": True, "threshold": 55},
        ],
        "status_quo": {"x0": 0.5, "x1": 0.5},
        "generator_settings": FAST,
    }
    exp = Experiment(id=1, config=ExperimentConfig.from_dict(spec))
    # one batch: control + 3 arms, latency of the control 50
    arms = [Arm("status_quo", {"x0": 0.5, "x1": 0.5})] + [
        Arm(f"0_{k}", {"x0": 0.1 * (k + 1), "x1": 0.2 * k}) for k in range(3)
    ]
    obs = {
        a.name: {
            "conv": Observation("conv", 0.1 + 0.01 * i, 0.001),
            "latency": Observation("latency", 50 + i, 0.5),
        }
        for i, a in enumerate(arms)
    }
    exp.trials.append(Trial(1, 1, 0, arms, TrialState.COMPLETED, "manual", obs))
    # relative model: the % threshold stays, the absolute 55 ms becomes +10 %
    assert model_thresholds(exp, True) == pytest.approx([-2.0, 10.0])
    # absolute model: -2 % of the control's 0.1 is 0.098
    assert model_thresholds(exp, False) == pytest.approx([0.098, 55.0])
    rep = pareto_report(exp)
    assert rep.relative
    assert rep.reference_point["conv"]["value"] == pytest.approx(-2.0)
    assert rep.reference_point["latency"]["value"] == pytest.approx(10.0)
    assert "status_quo" in {a.arm_name for a in rep.arms}


def test_multi_objective_initial_design_is_d_plus_one_at_least_five() -> None:
    def space(d: int):  # type: ignore[no-untyped-def]
        params = [{"name": f"x{i}", "type": "float", "bounds": [0.0, 1.0]} for i in range(d)]
        spec = {"name": "s", "parameters": params, "objectives": ["f1", "f2"]}
        return Experiment(id=1, config=ExperimentConfig.from_dict(spec)).search_space

    for name in ("noisy_ehvi", "parego"):
        gen = get_generator(name)
        assert [gen.n_initial(space(d)) for d in (2, 4, 6, 10)] == [5, 5, 7, 11]
        assert get_generator(name, {"n_initial": 3}).n_initial(space(6)) == 3
    # the single-objective rule is unchanged: max(2 d + 1, 5)
    assert get_generator("noisy_ei").n_initial(space(6)) == 13


def test_ehvi_acquisition_runs_on_the_batched_joint_model() -> None:
    from botorch.models import ModelListGP, SingleTaskGP

    exp = _experiment(_box_values())
    acqf, _ = _acqf(exp)
    assert isinstance(acqf.model, SingleTaskGP) and not isinstance(acqf.model, ModelListGP)
    assert acqf.model.num_outputs == 2
    # same posterior as the per-metric models
    fitted = fit_outcome_models(training_data(exp), ["f1", "f2"])
    X = torch.tensor([[0.9, 0.1], [0.4, 0.7]], dtype=torch.float64)
    with torch.no_grad():
        a, b = fitted.joint.posterior(X), fitted.model.posterior(X)
    assert torch.allclose(a.mean, b.mean, atol=1e-6)
    assert torch.allclose(a.variance, b.variance, rtol=1e-4, atol=1e-9)


def test_init_batch_limit_changes_cost_not_the_proposal() -> None:
    """Scoring the raw samples in fewer, larger calls (``init_batch_limit``) gives the same
    restarts, hence the same proposal."""
    exp = _experiment(_box_values())
    exp.config.generator = "noisy_ehvi"
    settings = {**FAST, "raw_samples": 64, "num_restarts": 2}
    a, b = (
        get_generator("noisy_ehvi", {**settings, "init_batch_limit": k}).generate(exp, 1, seed=3)
        for k in (8, 64)
    )
    assert a.candidates[0].parameters == pytest.approx(b.candidates[0].parameters)
