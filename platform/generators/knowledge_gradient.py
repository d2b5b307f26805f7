"""One-shot knowledge gradient: value a new observation by the recommendation it leads to.

Implements the BoTorch paper's showcase acquisition, the one-shot knowledge gradient "OKG"
(Balandat et al., NeurIPS 2020), with BoTorch's ``qKnowledgeGradient``. After the experiment ends, Assay ships
the arm the *model* recommends, not the best noisy observation; the knowledge gradient of a
batch ``X`` is how much observing it is expected to raise the value of that recommendation::

    KG(X) = E_{y ~ p(y(X) | D)} [ max_{x'} v(x' | D ∪ (X, y)) ] − max_{x'} v(x' | D)

where ``v(x' | D)`` is the value of recommending ``x'`` under the posterior given data ``D``.
Without outcome constraints ``v`` is the posterior mean of the objective (maximised; a
minimised objective is negated), the classic KG. The expectation is estimated with
``num_fantasies`` quasi-Monte-Carlo fantasized observations ``y_i`` (observation noise
included), and — the one-shot idea of Balandat et al. — the inner maximisations are replaced by
one decision variable ``x'_i`` per fantasy, optimised *jointly* with ``X``::

    max_X KG(X) = max_{X, x'_1..x'_F} (1/F) Σ_i v(x'_i | D ∪ (X, y_i)) − v*

so one ``optimize_acqf`` call over ``q + F`` points solves the nested problem (its optimum is
the nested optimum; at any fixed ``x'`` the one-shot objective is a lower bound). ``v* =
max_{x'} v(x' | D)`` (``current_value``) is computed first, by maximising ``v`` on the current
model; it does not move the maximiser but makes the reported value a true KG (≥ 0 up to
Monte-Carlo error). That maximiser is the recommendation the model would make today, reported as
``info["kg_recommendation"]``.

**Outcome constraints** are handled in the recommendation's value: the inner value is the
feasibility-weighted posterior objective of BoTorch's ``ConstrainedMCObjective``::

    v(x') = E_{(f, c) ~ p(. | D)} [ (f(x') + M) · Π_j σ(−c_j(x') / η_j) ] − M

estimated with ``mc_samples`` QMC samples (a fixed ``inner_sampler``, so it is smooth in
``x'``); ``c_j ≤ 0`` is feasible, ``σ`` a sigmoid with temperature ``η_j = constraint_eta`` ×
the observed standard deviation of constraint ``j``'s metric, and ``M`` BoTorch's
``get_infeasible_cost`` (the objective's posterior lower bound, so any likely-feasible
recommendation beats any infeasible one). KG therefore values observations that make a
*feasible* recommendation better or more certain. While no observed arm is feasible with
posterior probability ½ there is no feasible recommendation to improve, and the generator, like
``noisy_ei``, maximises the probability of feasibility (``qLogProbabilityOfFeasibility``) first.

**Pending points** ``P`` (running trials, arms carried in with ``include=``, and Sobol points
of the same ask) are ``X_pending``: they are fantasized *jointly* with ``X`` in every fantasy,
so the acquisition is ``KG(X ∪ P)``, whose ``X``-dependent part is the marginal value
``KG(X ∪ P) − KG(P)`` of ``X`` given that ``P`` will be observed — an ask never pays twice for
the same information. (The reported ``acquisition_value`` is the joint one.) Batches of ``n``
points are one joint ``q = n`` one-shot problem (not greedy).

**Search spaces.** The ``q + F`` points are optimised over the unit cube of model space with the
linear parameter constraints; integer and ordered-choice parameters are relaxed and the proposal
rounded (a rounded duplicate is replaced by a Sobol point, ``info["deduplicated"]``). Unordered
choice parameters are rejected when the experiment is created (use ``noisy_ei``).

**Initial design, fits and failures** are those of every model-based generator
(:class:`~assay.platform.generators.base.ModelBasedGenerator`): the same Sobol initial design,
the same model fit with its retries (warm start, cold start, noise floor + jitter, prior
hyperparameters), a failed fit falls back to Sobol points, and a numerical failure of the
acquisition optimisation to Sobol points recorded as ``fallback``
(:func:`~assay.platform.generators.base.acquisition_fallback`).

Example:
    >>> import assay
    >>> client = assay.Client()
    >>> exp = client.create_experiment(
    ...     name="kg",
    ...     parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
    ...     objective="y",
    ...     outcome_constraints=["cost <= 1"],
    ...     generator="knowledge_gradient",
    ...     generator_settings={"num_fantasies": 16},
    ... )
    >>> [trial] = client.ask(exp.id)  # doctest: +SKIP

Owns: :class:`KnowledgeGradientGenerator` and its settings, and the KG building blocks
(:func:`build_knowledge_gradient`, :func:`constrained_objective`, :func:`value_function`,
:func:`optimize_knowledge_gradient`).

May import: torch, botorch, pydantic and, of ``assay``, the :mod:`assay.platform` modules below
the generators, :mod:`assay.platform.generators.base` and
:mod:`assay.platform.generators.noisy_ei` (its objective, constraints and feasibility rule).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import PosteriorMean
from botorch.acquisition.knowledge_gradient import qKnowledgeGradient
from botorch.acquisition.logei import qLogProbabilityOfFeasibility
from botorch.acquisition.monte_carlo import qSimpleRegret
from botorch.acquisition.objective import (
    ConstrainedMCObjective,
    ScalarizedPosteriorTransform,
)
from botorch.acquisition.utils import get_infeasible_cost
from botorch.exceptions.warnings import OptimizationWarning
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from pydantic import Field, model_validator
from torch import Tensor

from assay.platform.errors import UnsupportedError
from assay.platform.experiment import ExperimentConfig, OutcomeConstraint
from assay.platform.generators.base import (
    Candidate,
    GenerationContext,
    ModelBasedGenerator,
    ModelBasedSettings,
)
from assay.platform.generators.noisy_ei import (
    FEASIBILITY_SEARCH_THRESHOLD,
    objective_and_constraints,
    probability_feasible,
)
from assay.platform.models import FittedModel, MetricData
from assay.platform.optimize import OptimizerOptions, optimize_acquisition
from assay.platform.relative import modelled_outcomes
from assay.platform.space import DTYPE, ChoiceParameter, SearchSpace

#: Largest ``raw_samples × num_fantasies`` accepted: the fantasy models scored when choosing
#: the restarts (memory and time grow with it).
MAX_RAW_FANTASY_PRODUCT = 65_536
#: Largest ``num_fantasies × mc_samples`` accepted: inner samples per evaluated batch.
MAX_INNER_SAMPLES = 16_384
#: Fantasy models scored per call while choosing restarts (bounds memory).
MAX_INIT_FANTASY_MODELS = 4096


class KnowledgeGradientSettings(ModelBasedSettings):
    """Settings of :class:`KnowledgeGradientGenerator` (``n_initial`` and ``warm_start``: see
    :class:`~assay.platform.generators.base.ModelBasedSettings`).

    Args:
        num_fantasies: Fantasized observations ``F`` of the outer expectation (each adds one
            inner decision variable to the one-shot problem).
        mc_samples: QMC samples of the inner, feasibility-weighted value (outcome constraints
            only; without them the inner value is the analytic posterior mean).
        constraint_eta: Sigmoid temperature of the constraints, relative to the observed
            standard deviation of each constraint's metric.
        num_restarts: Local optimisations of the one-shot problem.
        raw_samples: Quasi-random batches scored to pick the restarts.
        maxiter: L-BFGS-B iterations per restart.
        max_seconds: Wall-time limit of the one-shot optimisation (the best point so far is
            used when it is reached).
        relativize: As ``noisy_ei``: with a control arm in batch trials, model % effects.
        torch_threads: torch intra-op threads during the ask (``None``: leave as is).
    """

    num_fantasies: int = Field(default=32, ge=2, le=256)
    mc_samples: int = Field(default=64, ge=8, le=2048)
    constraint_eta: float = Field(default=0.05, gt=0.0, le=1.0)
    num_restarts: int = Field(default=8, ge=1, le=64)
    raw_samples: int = Field(default=256, ge=16, le=8192)
    maxiter: int = Field(default=100, ge=1, le=2000)
    max_seconds: float = Field(default=60.0, gt=0.0, le=600.0)
    relativize: bool = True
    torch_threads: int | None = Field(default=1, ge=1, le=1024)

    @model_validator(mode="after")
    def _check_cost(self) -> KnowledgeGradientSettings:
        if self.raw_samples * self.num_fantasies > MAX_RAW_FANTASY_PRODUCT:
            raise ValueError(
                f"raw_samples x num_fantasies must be <= {MAX_RAW_FANTASY_PRODUCT} "
                f"(got {self.raw_samples} x {self.num_fantasies})"
            )
        if self.num_fantasies * self.mc_samples > MAX_INNER_SAMPLES:
            raise ValueError(
                f"num_fantasies x mc_samples must be <= {MAX_INNER_SAMPLES} "
                f"(got {self.num_fantasies} x {self.mc_samples})"
            )
        return self


def build_knowledge_gradient(
    config: ExperimentConfig,
    fitted: FittedModel,
    data: Mapping[str, MetricData],
    X_baseline: Tensor,
    X_pending: Tensor | None,
    settings: KnowledgeGradientSettings,
    seed: int,
    outcome_constraints: Sequence[OutcomeConstraint] | None = None,
    current_value: Tensor | None = None,
) -> qKnowledgeGradient:
    """``qKnowledgeGradient`` valuing the (feasibility-weighted) recommendation.

    Args:
        config: The experiment configuration (objective direction, constraints).
        fitted: The fitted outcome models (``m`` outputs).
        data: Training data per metric (sets the constraints' sigmoid temperatures).
        X_baseline: ``n x d`` observed points (for the infeasible cost ``M``).
        X_pending: ``p x d`` points fantasized jointly with the candidates, or ``None``.
        settings: Fantasy and inner-sample counts, constraint temperature.
        seed: Seeds the fantasy and inner QMC samplers.
        outcome_constraints: In model units (default: the config's, as written).
        current_value: ``v*`` to subtract (``None``: report ``E[max v]`` instead of KG).
    """
    _, constraints, _ = objective_and_constraints(config, fitted, outcome_constraints)
    sampler = SobolQMCNormalSampler(torch.Size([settings.num_fantasies]), seed=seed)
    if not constraints:
        return qKnowledgeGradient(
            fitted.model,
            num_fantasies=settings.num_fantasies,
            sampler=sampler,
            posterior_transform=objective_transform(config, fitted),
            X_pending=X_pending,
            current_value=current_value,
        )
    return qKnowledgeGradient(
        fitted.model,
        num_fantasies=settings.num_fantasies,
        sampler=sampler,
        objective=constrained_objective(
            config, fitted, data, X_baseline, settings.constraint_eta, outcome_constraints
        ),
        inner_sampler=SobolQMCNormalSampler(torch.Size([settings.mc_samples]), seed=seed + 1),
        X_pending=X_pending,
        current_value=current_value,
    )


def objective_transform(
    config: ExperimentConfig, fitted: FittedModel
) -> ScalarizedPosteriorTransform:
    """The objective as a scalarised posterior (``±1`` on its output, 0 elsewhere)."""
    w = torch.zeros(len(fitted.metrics), dtype=DTYPE)
    w[fitted.output_index(config.objective.name)] = -1.0 if config.objective.minimize else 1.0
    return ScalarizedPosteriorTransform(weights=w)


def constrained_objective(
    config: ExperimentConfig,
    fitted: FittedModel,
    data: Mapping[str, MetricData],
    X_baseline: Tensor,
    eta: float,
    outcome_constraints: Sequence[OutcomeConstraint] | None = None,
) -> ConstrainedMCObjective:
    """The feasibility-weighted objective ``(f + M) Π σ(−c_j / η_j) − M`` (see the module).

    ``η_j = eta × sd(observed values of constraint j's metric)`` (1 when undefined).
    """
    objective, constraints, _ = objective_and_constraints(config, fitted, outcome_constraints)
    etas = []
    for oc in config.outcome_constraints if outcome_constraints is None else outcome_constraints:
        if oc.metric not in fitted.metrics:
            continue
        y = data[oc.metric].Y if oc.metric in data else None
        sd = float(y.std()) if y is not None and y.numel() > 1 else 1.0
        etas.append(eta * (sd if math.isfinite(sd) and sd > 0 else 1.0))
    with torch.no_grad():
        M = get_infeasible_cost(X_baseline, fitted.model, objective=objective)
    return ConstrainedMCObjective(
        objective=objective,
        constraints=constraints,
        infeasible_cost=float(M.max()),
        eta=torch.tensor(etas, dtype=DTYPE),
    )


def value_function(acqf: qKnowledgeGradient) -> AcquisitionFunction:
    """KG's inner value ``v(x' | D)`` on the *current* model (what ``current_value``
    maximises): the posterior mean, or the feasibility-weighted MC objective."""
    if acqf.objective is not None:
        return qSimpleRegret(acqf.model, sampler=acqf.inner_sampler, objective=acqf.objective)
    return PosteriorMean(acqf.model, posterior_transform=acqf.posterior_transform)


def optimize_knowledge_gradient(
    acqf: qKnowledgeGradient,
    space: SearchSpace,
    q: int,
    settings: KnowledgeGradientSettings,
    info: dict[str, Any] | None = None,
) -> tuple[Tensor, float]:
    """One-shot optimisation of ``acqf`` over ``q`` candidates and its fantasy solutions.

    BoTorch's ``optimize_acqf`` with ``return_full_tree=True``; restarts come from
    ``gen_one_shot_kg_initial_conditions`` (most fantasy solutions start at maximisers of the
    current value function).

    Returns:
        The ``(q + F) x d`` model-space solution (candidates first, then one inner solution
        per fantasy) and its one-shot value.
    """
    s = settings
    init_limit = max(1, MAX_INIT_FANTASY_MODELS // s.num_fantasies)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OptimizationWarning)
        warnings.simplefilter("always", RuntimeWarning)
        X_full, value = optimize_acqf(
            acqf,
            bounds=space.model_bounds(),
            q=q,
            num_restarts=s.num_restarts,
            raw_samples=s.raw_samples,
            inequality_constraints=space.inequality_constraints(),
            options={
                "maxiter": s.maxiter,
                "batch_limit": s.num_restarts,
                "init_batch_limit": init_limit,
                "num_inner_restarts": max(2, s.num_restarts),
                "raw_inner_samples": s.raw_samples,
            },
            timeout_sec=s.max_seconds,
            return_full_tree=True,
            retry_on_optimization_warning=False,
        )
    notes = {
        str(w.message)[:120]
        for w in caught
        if issubclass(w.category, OptimizationWarning | RuntimeWarning)
    }
    if info is not None and notes:  # e.g. L-BFGS-B line-search exits: the best point is used
        info["optimizer_warnings"] = sorted(notes)
    X_full = X_full.detach().reshape(q + acqf.num_fantasies, -1)
    return X_full, float(value.reshape(-1)[0])


class KnowledgeGradientGenerator(ModelBasedGenerator):
    """Sobol initial design, then one-shot (constrained) knowledge gradient.

    The initial design, the fit and the fallbacks are
    :class:`~assay.platform.generators.base.ModelBasedGenerator`'s; this class models the
    (possibly relativized) outcomes like ``noisy_ei`` and proposes by one-shot KG. See the
    module docstring for the method and its choices.

    Example:
        >>> gen = KnowledgeGradientGenerator({"num_fantasies": 16, "num_restarts": 4})
        >>> result = gen.generate(experiment, n=1, seed=0)  # doctest: +SKIP
        >>> result.info["acquisition"], result.info["kg_recommendation"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "knowledge_gradient"
    Settings = KnowledgeGradientSettings

    def validate_experiment(self, experiment_config: ExperimentConfig) -> None:
        """Reject unordered choice parameters (the one-shot problem is continuous)."""
        for p in experiment_config.search_space.tunable:
            if isinstance(p, ChoiceParameter) and p.is_one_hot:
                raise UnsupportedError(
                    f"generator 'knowledge_gradient' does not support unordered choice "
                    f"parameters (parameter {p.name!r}); make it ordered if its values have "
                    "an order, or use generator 'noisy_ei'",
                    field=f"parameters.{p.name}",
                )

    def load_data(self, ctx: GenerationContext) -> None:
        """The outcomes as :func:`~assay.platform.relative.modelled_outcomes` gives them (as
        ``noisy_ei``): % effects against the batch's control when ``relativize`` applies, raw
        means otherwise, with the outcome constraints in the same units."""
        outcomes = modelled_outcomes(ctx.experiment, relativize=self.settings.relativize)
        if outcomes.relative:
            ctx.info["relative"] = True
        if outcomes.notes:
            ctx.info["data_notes"] = outcomes.notes
        ctx.data, ctx.outcome_constraints = outcomes.data, outcomes.constraints

    def propose(self, ctx: GenerationContext, fitted: FittedModel, n: int) -> Iterator[Candidate]:
        """KG (or, with no likely-feasible arm yet, probability of feasibility) proposals,
        ``ctx.pending`` fantasized as ``X_pending``."""
        space, config, info = ctx.experiment.search_space, ctx.experiment.config, ctx.info
        s, seed, constraints_in = self.settings, ctx.seed, ctx.outcome_constraints
        X_baseline = torch.unique(torch.cat([d.X for d in ctx.data.values()]), dim=0)
        X_pending = space.encode_many(ctx.pending) if ctx.pending else None
        if X_pending is not None:
            info["pending_fantasized"] = int(X_pending.shape[0])
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            _, constraints, notes = objective_and_constraints(config, fitted, constraints_in)
            if notes:
                info["notes"] = notes
            feasibility_first = False
            if constraints:
                p_feas = probability_feasible(config, fitted, X_baseline, constraints_in)
                info["max_p_feasible_observed"] = round(float(p_feas.max()), 4)
                feasibility_first = float(p_feas.max()) < FEASIBILITY_SEARCH_THRESHOLD
            if feasibility_first:
                info["acquisition"] = "qLogProbabilityOfFeasibility"
                acqf: AcquisitionFunction = qLogProbabilityOfFeasibility(
                    fitted.model,
                    constraints=constraints,
                    sampler=SobolQMCNormalSampler(torch.Size([s.mc_samples]), seed=seed),
                    X_pending=X_pending,
                )
                X, values = optimize_acquisition(
                    acqf, space, n, OptimizerOptions(s.num_restarts, s.raw_samples, s.maxiter)
                )
                value_list = values.tolist()
            else:
                info["acquisition"] = "qKnowledgeGradient" + (
                    "(ConstrainedMCObjective)" if constraints else "(PosteriorMean)"
                )
                kg = build_knowledge_gradient(
                    config, fitted, ctx.data, X_baseline, X_pending, s, seed, constraints_in
                )
                v_star, x_star = self._current_value(kg, space)
                kg.current_value = v_star
                info["kg_current_value"] = float(v_star)
                info["kg_recommendation"] = space.decode(x_star)[0]
                X_full, value = optimize_knowledge_gradient(kg, space, n, s, info)
                X = X_full[:n]
                value_list = [value] * n
                info["num_fantasies"] = s.num_fantasies
        info["optimize_seconds"] = round(time.perf_counter() - t0, 4)
        for params, value in zip(space.decode(X), value_list, strict=True):
            sig = SearchSpace.signature(params)
            if sig in ctx.avoid or not space.is_feasible(params):
                continue  # the base tops up with Sobol points
            ctx.avoid.add(sig)
            ctx.pending.append(params)
            yield Candidate(
                params,
                self.name,
                {
                    "acquisition": info["acquisition"],
                    "acquisition_value": value if math.isfinite(value) else None,
                },
            )

    def _current_value(self, kg: qKnowledgeGradient, space: SearchSpace) -> tuple[Tensor, Tensor]:
        """``v* = max_x' v(x' | D)`` and its maximiser (model space, ``1 x d``)."""
        s = self.settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            x_star, v_star = optimize_acqf(
                value_function(kg),
                bounds=space.model_bounds(),
                q=1,
                num_restarts=max(2, s.num_restarts),
                raw_samples=s.raw_samples,
                inequality_constraints=space.inequality_constraints(),
                options={"maxiter": s.maxiter, "batch_limit": max(2, s.num_restarts)},
            )
        return v_star.detach().reshape(()), x_star.detach().reshape(1, -1)


__all__ = [
    "KnowledgeGradientGenerator",
    "KnowledgeGradientSettings",
    "build_knowledge_gradient",
    "constrained_objective",
    "objective_transform",
    "optimize_knowledge_gradient",
    "value_function",
]
