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

Until the initial design is complete (default ``max(2 d + 1, 5)`` arms, observed or pending,
of any origin: the rule of :class:`~assay.platform.generators.base.ModelBasedGenerator`) and
while no objective value is observed, points come from scrambled Sobol. When no observed arm is
feasible with posterior probability of at least one half, the generator maximises the
probability of feasibility (``qLogProbabilityOfFeasibility``) instead: there is no feasible
incumbent to improve on yet.

Owns: :class:`NoisyEIGenerator` and its settings, the MC objective and constraint callables
(:func:`objective_and_constraints`) and :func:`probability_feasible`.

May import: torch, gpytorch, botorch, pydantic and, of ``assay``, the :mod:`assay.platform` modules below
the generators and :mod:`assay.platform.generators.base`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import gpytorch
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

from assay.platform.experiment import Experiment, ExperimentConfig, OutcomeConstraint
from assay.platform.generators.analytic_nei import (
    AnalyticLogPF,
    build_analytic_nei,
    posterior_means,
)
from assay.platform.generators.base import (
    Candidate,
    GenerationContext,
    ModelBasedGenerator,
    ModelBasedSettings,
)
from assay.platform.models import FittedModel
from assay.platform.optimize import OptimizerOptions, optimize_acquisition
from assay.platform.relative import modelled_outcomes
from assay.platform.space import DTYPE, SearchSpace

#: Below this best posterior probability of feasibility among observed arms, the generator
#: searches for feasibility first.
FEASIBILITY_SEARCH_THRESHOLD = 0.5
#: NEI's baseline (the observed points whose sampled values define the incumbent) holds at most
#: this many points: the likeliest incumbents (:func:`likely_incumbents`).
MAX_BASELINE = 200


class NoisyEISettings(ModelBasedSettings):
    """Settings of :class:`NoisyEIGenerator` (``n_initial`` and ``warm_start``: see
    :class:`~assay.platform.generators.base.ModelBasedSettings`).

    Args:
        mc_samples: QMC samples of the joint posterior.
        num_restarts: Local optimizations of the acquisition function.
        raw_samples: Quasi-random points scored to pick the restarts.
        maxiter: L-BFGS-B iterations per restart (continuous spaces). 60, not BoTorch's 200:
            on the 6-D two-constraint problem at 25 observations the proposals were the same
            and the ask's CPU time 40-55 % lower (PROGRESS/README benchmarks, issue 19).
        prune_baseline: Drop observed points very unlikely to be the incumbent.
        relativize: With a control arm (``status_quo``) observed in batch trials, model
            each arm's % effect against its batch's control rather than raw means (see
            :mod:`assay.platform.relative`): batch-to-batch shifts cancel.
        torch_threads: torch intra-op threads during the ask (``None``: leave torch's
            setting). One is fastest for an ask's tiny tensors, and much faster on shared
            cores (see :func:`assay.platform.optimize.intra_op_threads`).
        analytic: Integrate the candidate's value in closed form given QMC samples at the
            observed (and pending) points, as Letham et al. (2019) do
            (:mod:`~assay.platform.generators.analytic_nei`); ``False``: BoTorch's
            ``qLogNoisyExpectedImprovement``, which samples the candidate too. Both are NEI
            (noise-aware); the analytic form needs no lazy-tensor posterior per evaluation.
        batch_num_restarts, batch_raw_samples, batch_mc_samples, batch_maxiter: Caps on
            ``num_restarts``, ``raw_samples``, ``mc_samples`` and ``maxiter`` for asks of
            several points (see :meth:`effort`).
        analytic_restarts: ``num_restarts`` when the acquisition is the analytic NEI (one
            point, nothing pending). 5, not 10: at the 20-evaluation states of
            ``hartmann6_2c``, ``mixed4`` and ``gramacy`` (4 ask seeds each) the proposals'
            acquisition values were identical and the ask 9-17 % cheaper (issue 19,
            PROGRESS.md; ``benchmarks/ask_profile.py``).
    """

    mc_samples: int = Field(default=256, ge=16, le=8192)
    num_restarts: int = Field(default=10, ge=1, le=256)
    raw_samples: int = Field(default=512, ge=16, le=65_536)
    maxiter: int = Field(default=60, ge=1, le=10_000)
    prune_baseline: bool = True
    relativize: bool = True
    torch_threads: int | None = Field(default=1, ge=1, le=1024)
    analytic: bool = True
    batch_num_restarts: int = Field(default=4, ge=1, le=256)
    batch_raw_samples: int = Field(default=256, ge=16, le=65_536)
    batch_mc_samples: int = Field(default=128, ge=16, le=8192)
    batch_maxiter: int = Field(default=60, ge=1, le=10_000)

    def effort(self, q: int) -> tuple[OptimizerOptions, int]:
        """The optimizer's effort and the QMC sample count of an ask of ``q`` points.

        A batch (``q > 1``) is built greedily, one full optimization per point, each with
        every earlier point fantasized: at most ``batch_num_restarts`` restarts chosen from
        ``batch_raw_samples`` raw points, with ``batch_mc_samples`` samples (4 / 256 / 128,
        the effort of the A/B simulation's NEI-vs-plug-in table, ``benchmarks/
        ab_simulation.py``). Measured on the 8-arm A/B batch after 10 batches (issue 19,
        target 4): 18.2 s CPU at the single-point effort (10 / 512 / 256), 16.4 s at this one
        with ``maxiter`` 60, 10.0 s with ``batch_maxiter`` 30 (PROGRESS; 30 is not the default
        until the A/B table is rerun with it). Single-point asks keep ``num_restarts`` /
        ``raw_samples`` / ``mc_samples`` / ``maxiter``.
        """
        if q <= 1:
            return OptimizerOptions(
                self.num_restarts, self.raw_samples, self.maxiter
            ), self.mc_samples
        return (
            OptimizerOptions(
                min(self.num_restarts, self.batch_num_restarts),
                min(self.raw_samples, self.batch_raw_samples),
                min(self.maxiter, self.batch_maxiter),
            ),
            min(self.mc_samples, self.batch_mc_samples),
        )

    analytic_restarts: int = Field(default=5, ge=1, le=256)


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


def likely_incumbents(
    config: ExperimentConfig,
    fitted: FittedModel,
    X: Tensor,
    k: int = MAX_BASELINE,
    constraints: Sequence[OutcomeConstraint] | None = None,
) -> Tensor:
    """The ``k`` observed points likeliest to be NEI's incumbent (all of ``X`` if ``n <= k``).

    NEI's incumbent in each posterior sample is the best feasible sampled value among the
    baseline points (Letham et al. 2019, eq. 7); a point whose posterior mean is far below
    hundreds of others (or that is infeasible in mean) is essentially never that maximiser,
    and BoTorch's baseline pruning would drop it anyway — at the price of a joint posterior
    sample over all ``n`` points (an ``n x n`` Cholesky per output at thousands of trials).
    Ranking: points whose posterior means satisfy every modelled constraint first, by
    posterior mean of the (maximised) objective; then the others by their summed constraint
    violation. Only posterior means are used (no ``n x n`` variance work).
    """
    if X.shape[0] <= k:
        return X
    obj = config.objective
    mean = posterior_means(fitted, X)  # the analytic NEI's factorisations, reused later
    if mean is None:
        with torch.no_grad(), gpytorch.settings.skip_posterior_variances():
            mean = fitted.joint.posterior(X).mean
    value = mean[:, fitted.output_index(obj.name)] * (-1.0 if obj.minimize else 1.0)
    violation = torch.zeros_like(value)
    for oc in config.outcome_constraints if constraints is None else constraints:
        if oc.metric not in fitted.metrics:
            continue
        m = mean[:, fitted.output_index(oc.metric)]
        violation += (m - oc.bound if oc.op == "<=" else oc.bound - m).clamp_min(0.0)
    spread = float(value.max() - value.min()) + 1.0
    score = torch.where(violation > 0, value.min() - spread - violation, value)
    return X[score.topk(k).indices]


class NoisyEIGenerator(ModelBasedGenerator):
    """Sobol initial design, then batch noisy-constrained EI.

    The initial design, the fit and the fallbacks are :class:`ModelBasedGenerator`'s; this
    class models the (possibly relativized) outcomes and proposes by qLogNEI.

    Example:
        >>> gen = NoisyEIGenerator({"n_initial": 6})
        >>> result = gen.generate(experiment, n=2, seed=0)  # doctest: +SKIP
        >>> [c.parameters for c in result.candidates]  # doctest: +SKIP
    """

    name: ClassVar[str] = "noisy_ei"
    Settings = NoisyEISettings

    def load_data(self, ctx: GenerationContext) -> None:
        """The outcomes as :func:`~assay.platform.relative.modelled_outcomes` gives them: %
        effects against the batch's control when ``relativize`` applies, raw means otherwise,
        with the outcome constraints in the same units."""
        outcomes = modelled_outcomes(ctx.experiment, relativize=self.settings.relativize)
        if outcomes.relative:
            ctx.info["relative"] = True
        if outcomes.notes:
            ctx.info["data_notes"] = outcomes.notes
        ctx.data, ctx.outcome_constraints = outcomes.data, outcomes.constraints

    def propose(self, ctx: GenerationContext, fitted: FittedModel, n: int) -> Iterator[Candidate]:
        yield from self.optimize_candidates(
            ctx.experiment, ctx.data, fitted, ctx.pending, n, ctx.seed, ctx.avoid, ctx.info,
            ctx.outcome_constraints,
        )  # fmt: skip

    def build_acquisition(
        self,
        experiment: Experiment,
        fitted: FittedModel,
        X_baseline: Tensor,
        X_pending: Tensor | None,
        seed: int,
        info: dict[str, Any],
        outcome_constraints: Sequence[OutcomeConstraint] | None = None,
        q: int = 1,
    ) -> AcquisitionFunction:
        """The analytic NEI (one point, ``q == 1``, no pending points; setting ``analytic``),
        else qLogNEI with constraints, or qLogPF when no observed arm is likely feasible.

        ``outcome_constraints``: in model units (default: the config's, as written)."""
        config = experiment.config
        objective, constraints, notes = objective_and_constraints(
            config, fitted, outcome_constraints
        )
        if notes:
            info["notes"] = notes
        mc_samples = self.settings.effort(q)[1]
        sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
        analytic = None
        # Only for one point with nothing pending: measured on the A/B batch (8 arms, greedy
        # with pending points) the analytic form was not cheaper (18 vs 15-16 s CPU) and its
        # batch quality is not benchmarked yet, so batches keep qLogNEI.
        if self.settings.analytic and q == 1 and X_pending is None:
            analytic = build_analytic_nei(
                config, fitted, X_baseline, X_pending, self.settings.mc_samples, seed,
                outcome_constraints,
            )  # fmt: skip
        if constraints:
            if analytic is not None:  # the same posterior, without building fitted.joint
                p_feas = analytic.probability_feasible(X_baseline)
            else:
                p_feas = probability_feasible(config, fitted, X_baseline, outcome_constraints)
            info["max_p_feasible_observed"] = round(float(p_feas.max()), 4)
            if float(p_feas.max()) < FEASIBILITY_SEARCH_THRESHOLD:
                if analytic is not None:  # the same probability in closed form
                    info["acquisition"] = "LogProbabilityOfFeasibility"
                    return AnalyticLogPF(analytic)
                info["acquisition"] = "qLogProbabilityOfFeasibility"
                return qLogProbabilityOfFeasibility(
                    fitted.joint, constraints=constraints, sampler=sampler, X_pending=X_pending
                )
        if analytic is not None:
            info["acquisition"] = "LogNoisyExpectedImprovement"
            return analytic
        info["acquisition"] = "qLogNoisyExpectedImprovement"
        return qLogNoisyExpectedImprovement(
            fitted.joint,
            X_baseline=X_baseline,
            sampler=sampler,
            objective=objective,
            constraints=constraints or None,
            X_pending=X_pending,
            prune_baseline=self.settings.prune_baseline,
        )

    def optimize_candidates(
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
        """Up to ``n`` new points by greedy batch qLogNEI (or qLogPF, see
        :meth:`build_acquisition`), every earlier point of the batch fantasized as pending.

        A proposal that duplicates an arm in ``avoid`` (or violates the parameter constraints
        after rounding) is dropped and the batch re-optimized once around it; what is still
        missing is left to the caller.

        Args:
            experiment: The experiment being asked.
            data: The training data ``fitted`` was fitted to.
            fitted: The outcome models.
            pending: Assignments fantasized as ``X_pending`` (extended with the proposals).
            n: Points wanted.
            seed: Seeds the QMC sampler and the optimizer's restarts.
            avoid: Signatures not to propose (extended with the proposals).
            info: The ask's info dict (acquisition used, optimization time).
            outcome_constraints: In model units (default: the config's, as written).
        """
        space = experiment.search_space
        X_baseline = torch.unique(torch.cat([d.X for d in data.values()]), dim=0)
        if X_baseline.shape[0] > MAX_BASELINE:
            info["baseline"] = f"{MAX_BASELINE} likeliest incumbents of {X_baseline.shape[0]}"
            X_baseline = likely_incumbents(
                experiment.config, fitted, X_baseline, MAX_BASELINE, outcome_constraints
            )
        s = self.settings
        options = dataclasses.replace(
            s.effort(n)[0], init_batch_limit=getattr(s, "init_batch_limit", 32)
        )
        t0 = time.perf_counter()
        out: list[Candidate] = []
        for attempt in range(2):  # second pass re-optimizes around duplicates
            X_pending = space.encode_many(pending) if pending else None
            with torch.random.fork_rng():
                torch.manual_seed(seed + attempt)
                acqf = self.build_acquisition(
                    experiment, fitted, X_baseline, X_pending, seed + attempt, info,
                    outcome_constraints, q=n - len(out),
                )  # fmt: skip
                effort = options
                if info["acquisition"] == "LogNoisyExpectedImprovement":
                    effort = dataclasses.replace(options, num_restarts=s.analytic_restarts)
                X, values = optimize_acquisition(acqf, space, n - len(out), effort)
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
