"""Noisy-constrained expected improvement (Letham, Karrer, Ottoni & Bakshy, 2019).

With noisy observations the incumbent ``f*`` is unknown, so expected improvement is integrated
over the joint posterior of the objective ``f`` and constraints ``c`` at the observed points
``X_obs`` and the candidate ``x`` (their eq. 7, estimated by quasi-Monte Carlo)::

    NEI(x) = E_{(f, c) ~ p(. | D)} [ max(f(x) - max_{x' in X_obs, c(x') feasible} f(x'), 0)
                                     * 1{c(x) feasible} ]

For each QMC sample the incumbent is the best *feasible* sampled objective value at the
observed points; the improvement of the candidate is weighted by its own feasibility. Batches
are built greedily: each new point is chosen with the previous ones (and every running trial)
fantasized as pending points. We use BoTorch's ``qLogNoisyExpectedImprovement`` (the log form of
Ament et al. 2023, numerically far better behaved than the paper's form, same maximiser in the
limit) with constraints ``c(Y) <= 0`` smoothed by a sigmoid, and baseline pruning.

In an experiment with a control arm (``status_quo``) run in batch trials, the models see
each arm's % effect against the control of its own batch (:mod:`assay.platform.relative`),
so batch-to-batch shifts cancel; relative constraints (``"revenue >= -1%"``) apply directly.

Until the initial design is complete (default ``max(2 d + 1, 5)`` arms) and while no objective
value is observed, points come from scrambled Sobol. When no observed arm is feasible with
posterior probability of at least one half, the generator maximises the probability of
feasibility (``qLogProbabilityOfFeasibility``) instead: there is no feasible incumbent to
improve on yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import (
    qLogNoisyExpectedImprovement,
    qLogProbabilityOfFeasibility,
)
from botorch.acquisition.objective import GenericMCObjective
from botorch.sampling import SobolQMCNormalSampler
from pydantic import Field
from torch import Tensor

from assay.platform.errors import ModelFitError
from assay.platform.experiment import Experiment, ExperimentConfig, OutcomeConstraint, TrialState
from assay.platform.generators.base import (
    Candidate,
    GenerationResult,
    Generator,
    GeneratorSettings,
    acquisition_fallback,
    existing_signatures,
    is_numerical_failure,
    sobol_candidates,
)
from assay.platform.models import FittedModel, fit_outcome_models
from assay.platform.optimize import (
    OptimizerOptions,
    optimize_acquisition,
    with_generator_threads,
)
from assay.platform.relative import control_arm_names as _controls
from assay.platform.relative import modelled_outcomes
from assay.platform.space import DTYPE, SearchSpace

#: Below this best posterior probability of feasibility among observed arms, the generator
#: searches for feasibility first.
FEASIBILITY_SEARCH_THRESHOLD = 0.5


class NoisyEISettings(GeneratorSettings):
    """Settings of :class:`NoisyEIGenerator`.

    Args:
        n_initial: Quasi-random arms before the model takes over (default
            ``max(2 d + 1, 5)``, ``d`` = number of tunable parameters).
        mc_samples: QMC samples of the joint posterior.
        num_restarts: Local optimizations of the acquisition function.
        raw_samples: Quasi-random points scored to pick the restarts.
        prune_baseline: Drop observed points very unlikely to be the incumbent.
        warm_start: Start hyperparameter fitting from the previous ask's optimum.
        relativize: With a control arm (``status_quo``) observed in batch trials, model
            each arm's % effect against its batch's control rather than raw means (see
            :mod:`assay.platform.relative`): batch-to-batch shifts cancel.
        torch_threads: torch intra-op threads during the ask (``None``: leave torch's
            setting). One is fastest for an ask's tiny tensors, and much faster on shared
            cores (see :func:`assay.platform.optimize.intra_op_threads`).
    """

    n_initial: int | None = Field(default=None, ge=1, le=10_000)
    mc_samples: int = Field(default=256, ge=16, le=8192)
    num_restarts: int = Field(default=10, ge=1, le=256)
    raw_samples: int = Field(default=512, ge=16, le=65_536)
    prune_baseline: bool = True
    warm_start: bool = True
    relativize: bool = True
    torch_threads: int | None = Field(default=1, ge=1, le=1024)


def objective_and_constraints(
    config: ExperimentConfig,
    fitted: FittedModel,
    constraints: Sequence[OutcomeConstraint] | None = None,
) -> tuple[GenericMCObjective, list[Callable[[Tensor], Tensor]], list[str]]:
    """Build the MC objective (maximised) and ``c(Y) <= 0`` constraint callables.

    ``constraints`` are the outcome constraints in the model's units (see
    :func:`assay.platform.relative.modelled_outcomes`); default: the config's, as written.

    Returns:
        The objective, the constraint callables, and notes about constraints that could not be
        modelled yet (no data for their metric).
    """
    obj = config.objective
    i_obj = fitted.output_index(obj.name)
    sign = -1.0 if obj.minimize else 1.0
    objective = GenericMCObjective(lambda Y, X=None: sign * Y[..., i_obj])
    callables, notes = [], []
    for oc in config.outcome_constraints if constraints is None else constraints:
        if oc.metric not in fitted.metrics:
            notes.append(
                f"constraint {oc.expression!r} not modelled yet: no data for {oc.metric!r}"
            )
            continue
        j, b = fitted.output_index(oc.metric), oc.bound
        if oc.op == "<=":
            callables.append(lambda Y, j=j, b=b: Y[..., j] - b)
        else:
            callables.append(lambda Y, j=j, b=b: b - Y[..., j])
    return objective, callables, notes


def probability_feasible(
    config: ExperimentConfig,
    fitted: FittedModel,
    X: Tensor,
    constraints: Sequence[OutcomeConstraint] | None = None,
) -> Tensor:
    """``P(all modelled outcome constraints hold)`` at ``n x d`` points (independent outputs).

    ``P(Y_m <= b) = Phi((b - mu) / sigma)`` under the GP posterior of the latent ``Y_m``.
    """
    mean, var = fitted.predict(X)
    p = torch.ones(X.shape[0], dtype=DTYPE)
    normal = torch.distributions.Normal(0.0, 1.0)
    for oc in config.outcome_constraints if constraints is None else constraints:
        if oc.metric not in fitted.metrics:
            continue
        j = fitted.output_index(oc.metric)
        sd = var[:, j].clamp_min(1e-18).sqrt()
        z = (oc.bound - mean[:, j]) / sd if oc.op == "<=" else (mean[:, j] - oc.bound) / sd
        p = p * normal.cdf(z)
    return p


class NoisyEIGenerator(Generator):
    """Sobol initial design, then batch noisy-constrained EI.

    Example:
        >>> gen = NoisyEIGenerator({"n_initial": 6})
        >>> result = gen.generate(experiment, n=2, seed=0)  # doctest: +SKIP
        >>> [c.parameters for c in result.candidates]  # doctest: +SKIP
    """

    name: ClassVar[str] = "noisy_ei"
    Settings = NoisyEISettings

    def n_initial(self, space: SearchSpace, experiment: Experiment | None = None) -> int:
        """Quasi-random arms first: the setting, else ``max(2 d + 1, 5)`` — except that in
        an experiment run in batch trials the first batch is the initial design."""
        if self.settings.n_initial:
            return self.settings.n_initial
        default = max(2 * space.compact_dim + 1, 5)
        if experiment is not None:
            first_batch = next((t for t in experiment.trials if len(t.arms) > 1), None)
            if first_batch is not None:
                sobol = sum(1 for a in first_batch.arms if a.name not in _controls(experiment))
                return min(default, max(sobol, 1))
        return default

    @with_generator_threads
    def generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> GenerationResult:
        space, config = experiment.search_space, experiment.config
        state = dict(experiment.generator_state)
        avoid = existing_signatures(experiment) | {SearchSpace.signature(p) for p in pending}
        info: dict[str, Any] = {"generator": self.name}
        sobol_arms = sum(
            len(t.arms)
            for t in experiment.trials
            if t.generator == "sobol" and t.state not in (TrialState.FAILED, TrialState.ABANDONED)
        )
        outcomes = modelled_outcomes(experiment, relativize=self.settings.relativize)
        data = outcomes.data
        if outcomes.relative:
            info["relative"] = True
        if outcomes.notes:
            info["data_notes"] = outcomes.notes
        n_sobol = min(n, max(0, self.n_initial(space, experiment) - sobol_arms))
        if config.objective.name not in data:
            n_sobol = n
        candidates: list[Candidate] = []
        if n_sobol:
            sob, state["sobol_consumed"] = sobol_candidates(
                space, n_sobol, seed=config.seed or 0,
                consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
            )  # fmt: skip
            candidates += sob
            avoid |= {SearchSpace.signature(c.parameters) for c in sob}
        n_model = n - n_sobol
        model_state: dict[str, Any] = {}
        if n_model:
            try:
                metrics = [m for m in config.modelled_metrics if m in data]
                fitted = fit_outcome_models(
                    data,
                    metrics,
                    warm_start=experiment.model_state if self.settings.warm_start else None,
                    seed=seed,
                )
            except ModelFitError as e:
                info["fallback"] = f"sobol: {e.message}"
                sob, state["sobol_consumed"] = sobol_candidates(
                    space, n_model, seed=config.seed or 0,
                    consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
                )  # fmt: skip
                return GenerationResult(candidates + sob, state, {}, info)
            model_state = fitted.state
            info["fit_seconds"] = round(fitted.fit_seconds, 4)
            if fitted.warnings:
                info["fit_warnings"] = fitted.warnings
            fantasized = [a.parameters for a in experiment.pending_arms()] + [
                dict(p) for p in pending
            ]
            fantasized += [c.parameters for c in candidates]
            try:
                model_candidates = self._optimize(
                    experiment, data, fitted, fantasized, n_model, seed, avoid, info,
                    outcomes.constraints,
                )  # fmt: skip
            except Exception as e:  # numerical failures fall back; anything else is a bug
                if not is_numerical_failure(e):
                    raise
                model_candidates = acquisition_fallback(
                    e, experiment, n_model, state=state, avoid=avoid, info=info,
                    generator=self.name,
                )  # fmt: skip
            candidates += model_candidates
            avoid |= {SearchSpace.signature(c.parameters) for c in model_candidates}
            missing = n_model - len(model_candidates)
            if missing:
                sob, state["sobol_consumed"] = sobol_candidates(
                    space, missing, seed=config.seed or 0,
                    consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
                )  # fmt: skip
                info["deduplicated"] = missing
                candidates += sob
        return GenerationResult(candidates, state, model_state, info)

    def build_acquisition(
        self,
        experiment: Experiment,
        fitted: FittedModel,
        X_baseline: Tensor,
        X_pending: Tensor | None,
        seed: int,
        info: dict[str, Any],
        outcome_constraints: Sequence[OutcomeConstraint] | None = None,
    ) -> AcquisitionFunction:
        """qLogNEI with constraints, or qLogPF when no observed arm is likely feasible.

        ``outcome_constraints``: in model units (default: the config's, as written)."""
        config = experiment.config
        objective, constraints, notes = objective_and_constraints(
            config, fitted, outcome_constraints
        )
        if notes:
            info["notes"] = notes
        sampler = SobolQMCNormalSampler(torch.Size([self.settings.mc_samples]), seed=seed)
        if constraints:
            p_feas = probability_feasible(config, fitted, X_baseline, outcome_constraints)
            info["max_p_feasible_observed"] = round(float(p_feas.max()), 4)
            if float(p_feas.max()) < FEASIBILITY_SEARCH_THRESHOLD:
                info["acquisition"] = "qLogProbabilityOfFeasibility"
                return qLogProbabilityOfFeasibility(
                    fitted.model, constraints=constraints, sampler=sampler, X_pending=X_pending
                )
        info["acquisition"] = "qLogNoisyExpectedImprovement"
        return qLogNoisyExpectedImprovement(
            fitted.model,
            X_baseline=X_baseline,
            sampler=sampler,
            objective=objective,
            constraints=constraints or None,
            X_pending=X_pending,
            prune_baseline=self.settings.prune_baseline,
        )

    def _optimize(
        self,
        experiment: Experiment,
        data: dict,
        fitted: FittedModel,
        pending: list[dict[str, Any]],
        n: int,
        seed: int,
        avoid: set[tuple],
        info: dict[str, Any],
        outcome_constraints: Sequence[OutcomeConstraint] | None = None,
    ) -> list[Candidate]:
        space = experiment.search_space
        X_baseline = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
        options = OptimizerOptions(self.settings.num_restarts, self.settings.raw_samples)
        t0 = time.perf_counter()
        out: list[Candidate] = []
        for attempt in range(2):  # second pass re-optimizes around duplicates
            X_pending = space.encode_many(pending) if pending else None
            with torch.random.fork_rng():
                torch.manual_seed(seed + attempt)
                acqf = self.build_acquisition(
                    experiment, fitted, X_baseline, X_pending, seed + attempt, info,
                    outcome_constraints,
                )  # fmt: skip
                X, values = optimize_acquisition(acqf, space, n - len(out), options)
            for params, value in zip(space.decode(X), values.tolist(), strict=True):
                sig = SearchSpace.signature(params)
                if sig in avoid or not space.is_feasible(params):
                    pending.append(params)
                    continue
                avoid.add(sig)
                pending.append(params)
                out.append(
                    Candidate(
                        params,
                        self.name,
                        {
                            "acquisition": info["acquisition"],
                            "acquisition_value": value if math.isfinite(value) else None,
                        },
                    )
                )
            if len(out) == n:
                break
        info["optimize_seconds"] = round(time.perf_counter() - t0, 4)
        return out
