"""Several objectives: noisy expected hypervolume improvement, and ParEGO.

``noisy_ehvi`` (the default with several objectives) maximises
``qLogNoisyExpectedHypervolumeImprovement`` (Daulton, Balandat & Bakshy 2021, "Parallel
Bayesian optimization of multiple noisy objectives with expected hypervolume improvement", in
the log form of Ament et al. 2023): the expected increase of the hypervolume dominated by the
*feasible* Pareto front, integrated over the joint posterior of every objective and constraint
at the observed points and the candidates (quasi-Monte Carlo), so noise in the observed front
is accounted for exactly as ``noisy_ei`` accounts for it in the incumbent. The reference point
is the objectives' thresholds, inferred where omitted (see :mod:`assay.platform.pareto`).
Batches are greedy (each point conditioned on the previous and every running trial as pending
points, BoTorch's cached-pending form).

``parego`` maximises ``qLogNParEGO`` (Knowles 2006; the noisy, log form of Daulton et al.):
noisy EI of an augmented Chebyshev scalarization of the objectives with random weights drawn
from the simplex, new weights for every point of a batch. Its cost does not grow with the
number of objectives, so it is the option for many objectives (say more than four).

**Cost.** NEHVI partitions the region dominated by each posterior sample's front into boxes:
its cost grows with the number of (unpruned) baseline points and steeply with the number of
objectives (box decompositions are exponential in ``m``); ``prune_baseline`` (default on)
keeps only observed points with a positive probability of being on the front, which keeps a
two- or three-objective ask with ~100 observations in about a second or two on one core.
Past four objectives use ``parego``.

The acquisition functions are built on :attr:`~assay.platform.models.FittedModel.joint` (one
batched multi-output GP when every metric was observed at the same arms, the usual case): its
posterior is the per-metric ``ModelListGP``'s, computed in one call per evaluation instead of
one per metric, which is most of an MC acquisition evaluation's cost. For that batched model
``noisy_ehvi`` goes further (setting ``dense_posterior``, on by default):
:class:`~assay.platform.generators.dense_nehvi.DenseLogNEHVI` is BoTorch's qLogNEHVI with the
candidates' samples computed from dense tensors precomputed once per ask (the Cholesky factor
of each output's ``K + N``, ``(K + N)^{-1} y``, the whitened baseline cross-covariance) and
the one-point log-hypervolume without the inclusion-exclusion identities: the same values
and gradients, about half the CPU time of an ask (``benchmarks/mo_ask_profile.py``).

Feasibility first, the fit, its retries and the fallbacks, the initial design (smaller here:
:meth:`NoisyEHVIGenerator.n_initial`) and the relativization against a control arm are :class:`~assay.platform.generators.noisy_ei.NoisyEIGenerator`'s.

Owns: :class:`NoisyEHVIGenerator`, :class:`ParEGOGenerator`, :func:`signed_objective`,
:func:`reference_point`.

May import: torch, botorch, linear_operator, pydantic and, of ``assay``, :mod:`assay.platform`
modules below the generators, :mod:`~assay.platform.generators.base`,
:mod:`~assay.platform.generators.noisy_ei` and :mod:`~assay.platform.generators.dense_nehvi`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogProbabilityOfFeasibility
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.acquisition.multi_objective.parego import qLogNParEGO
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.sampling import sample_simplex
from linear_operator.utils.errors import NotPSDError
from pydantic import Field
from torch import Tensor

from assay.platform.experiment import Experiment, ExperimentConfig, OutcomeConstraint
from assay.platform.generators.base import Candidate, GenerationContext
from assay.platform.generators.dense_nehvi import DenseLogNEHVI, supports_dense_joint
from assay.platform.generators.noisy_ei import (
    FEASIBILITY_SEARCH_THRESHOLD,
    NoisyEIGenerator,
    NoisyEISettings,
    objective_and_constraints,
    probability_feasible,
)
from assay.platform.models import FittedModel
from assay.platform.optimize import OptimizerOptions
from assay.platform.pareto import infer_reference_point, is_non_dominated
from assay.platform.relative import model_thresholds
from assay.platform.space import DTYPE, SearchSpace


def signed_objective(
    config: ExperimentConfig, fitted: FittedModel
) -> WeightedMCMultiOutputObjective:
    """The objectives as maximized outputs: ``sign_k * Y[..., i_k]`` in objectives order."""
    idx = [fitted.output_index(o.name) for o in config.objectives]
    weights = torch.tensor([o.sign for o in config.objectives], dtype=DTYPE)
    return WeightedMCMultiOutputObjective(weights=weights, outcomes=idx)


def reference_point(
    config: ExperimentConfig,
    fitted: FittedModel,
    X: Tensor,
    thresholds: Sequence[float | None],
    constraints: Sequence[OutcomeConstraint] | None = None,
) -> tuple[Tensor, list[bool]]:
    """The reference point in maximized units, and which coordinates were inferred.

    A coordinate with a threshold (in model units) is ``sign * threshold``; the others follow
    :func:`~assay.platform.pareto.infer_reference_point` applied to the Pareto front of the
    posterior means at ``X`` (the observed arms) among the arms feasible with probability at
    least one half (all arms when none is).
    """
    mean, _ = fitted.predict(X)
    signs = torch.tensor([o.sign for o in config.objectives], dtype=DTYPE)
    Y = mean[:, [fitted.output_index(o.name) for o in config.objectives]] * signs
    p = probability_feasible(config, fitted, X, constraints)
    ok = p >= FEASIBILITY_SEARCH_THRESHOLD
    pool = Y[ok] if bool(ok.any()) else Y
    inferred = infer_reference_point(pool[is_non_dominated(pool)])
    ref, flags = inferred.clone(), []
    for k, t in enumerate(thresholds):
        if t is not None:
            ref[k] = signs[k] * t
        flags.append(t is None)
    return ref, flags


class NoisyEHVISettings(NoisyEISettings):
    """Settings of :class:`NoisyEHVIGenerator` (those of ``noisy_ei``; fewer QMC samples by
    default, as every sample carries its own box decomposition).

    Args:
        mc_samples: QMC samples of the joint posterior.
        init_batch_limit: Raw samples scored per acquisition call when choosing the
            restarts (see :class:`~assay.platform.optimize.OptimizerOptions`; the proposal
            does not depend on it).
        dense_posterior: Sample the candidates' joint posterior on dense tensors
            (:class:`~assay.platform.generators.dense_nehvi.DenseLogNEHVI`: the same values
            and gradients as BoTorch's qLogNEHVI, without GPyTorch's lazy posterior per
            evaluation) when the joint model allows it; ``False``: BoTorch's class.
    """

    mc_samples: int = Field(default=128, ge=16, le=4096)
    raw_samples: int = Field(default=256, ge=16, le=65_536)
    init_batch_limit: int = Field(default=32, ge=1, le=65_536)
    dense_posterior: bool = True

    def effort(self, q: int) -> tuple[OptimizerOptions, int]:
        """The same effort for every ``q`` (the batch caps of ``noisy_ei`` were measured on
        its A/B batch only; EHVI batches keep the effort ``benchmarks/mo_quality.py`` ran)."""
        return OptimizerOptions(self.num_restarts, self.raw_samples, self.maxiter), self.mc_samples


class NoisyEHVIGenerator(NoisyEIGenerator):
    """Sobol initial design, then greedy batch qLogNEHVI over objectives and constraints."""

    name: ClassVar[str] = "noisy_ehvi"
    Settings = NoisyEHVISettings
    #: The centre of the space opens the initial design (``centre_first``; for ``parego``
    #: too): on the three ``mo_quality`` problems the design's front is as good or better
    #: with it (``benchmarks/centre_point.py``), and Ax's default does the same.
    centre_first_default: ClassVar[bool] = True
    _thresholds: list[float | None]

    def n_initial(self, space: SearchSpace, experiment: Experiment | None = None) -> int:
        """Size of the initial design: the ``n_initial`` setting, else ``max(d + 1, 5)`` (and,
        in batch trials, at most the first batch's new arms, as for every model-based
        generator).

        Smaller than the single-objective ``max(2 d + 1, 5)``: a multi-objective budget is
        spent spreading points along the front, which only the model can do, and ``d + 1``
        points already pin every ARD lengthscale (Ax's default is 5 whatever ``d``; BoTorch's
        tutorials use ``2 (d + 1)``). With ``d = 6`` and the 30-40 evaluations of a typical
        multi-objective budget, ``2 d + 1 = 13`` would spend a third of it on Sobol points.
        """
        if self.settings.n_initial:
            return self.settings.n_initial
        return min(super().n_initial(space, experiment), max(space.compact_dim + 1, 5))

    def n_initial_left(self, ctx: GenerationContext) -> int:
        """As the base rule, but every objective must have been observed."""
        if any(o.name not in ctx.data for o in ctx.experiment.config.objectives):
            return ctx.n
        return super().n_initial_left(ctx)

    def propose(self, ctx: GenerationContext, fitted: FittedModel, n: int) -> Iterator[Candidate]:
        notes: list[str] = []
        self._thresholds = model_thresholds(ctx.experiment, bool(ctx.info.get("relative")), notes)
        if notes:
            ctx.info.setdefault("data_notes", []).extend(notes)
        yield from super().propose(ctx, fitted, n)

    def feasibility_first(
        self,
        config: ExperimentConfig,
        fitted: FittedModel,
        X_baseline: Tensor,
        X_pending: Tensor | None,
        sampler: SobolQMCNormalSampler,
        constraints: list,
        outcome_constraints: Sequence[OutcomeConstraint] | None,
        info: dict[str, Any],
    ) -> AcquisitionFunction | None:
        """qLogPF when constraints exist and no observed arm is likely feasible, else None."""
        if not constraints:
            return None
        p_feas = probability_feasible(config, fitted, X_baseline, outcome_constraints)
        info["max_p_feasible_observed"] = round(float(p_feas.max()), 4)
        if float(p_feas.max()) >= FEASIBILITY_SEARCH_THRESHOLD:
            return None
        info["acquisition"] = "qLogProbabilityOfFeasibility"
        return qLogProbabilityOfFeasibility(
            fitted.joint, constraints=constraints, sampler=sampler, X_pending=X_pending
        )

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
        """qLogNEHVI with constraints, or qLogPF when no observed arm is likely feasible.

        ``q`` (points wanted, passed by :meth:`NoisyEIGenerator.optimize_candidates`) does not
        change the acquisition here."""
        config = experiment.config
        _, constraints, notes = objective_and_constraints(config, fitted, outcome_constraints)
        if notes:
            info["notes"] = notes
        sampler = SobolQMCNormalSampler(torch.Size([self.settings.mc_samples]), seed=seed)
        pf = self.feasibility_first(
            config, fitted, X_baseline, X_pending, sampler, constraints, outcome_constraints, info
        )
        if pf is not None:
            return pf
        thresholds = getattr(self, "_thresholds", [o.threshold for o in config.objectives])
        ref, inferred = reference_point(config, fitted, X_baseline, thresholds, outcome_constraints)
        info["reference_point"] = {
            o.name: {"value": float(o.sign * ref[k]), "inferred": inferred[k]}
            for k, o in enumerate(config.objectives)
        }
        info["acquisition"] = "qLogNoisyExpectedHypervolumeImprovement"
        kwargs: dict[str, Any] = {
            "ref_point": ref,
            "X_baseline": X_baseline,
            "sampler": sampler,
            "objective": signed_objective(config, fitted),
            "constraints": constraints or None,
            "X_pending": X_pending,
            "prune_baseline": self.settings.prune_baseline,
        }
        if getattr(self.settings, "dense_posterior", False) and supports_dense_joint(fitted.joint):
            try:
                acqf = DenseLogNEHVI(fitted.joint, **kwargs)
                info["posterior"] = "dense"
                return acqf
            except (NotPSDError, torch.linalg.LinAlgError) as e:  # K + N not factorisable
                info["posterior"] = f"gpytorch (dense factorisation failed: {e})"
        return qLogNoisyExpectedHypervolumeImprovement(fitted.joint, **kwargs)


class ParEGOGenerator(NoisyEHVIGenerator):
    """Sobol initial design, then qLogNParEGO: one random Chebyshev scalarization per point."""

    name: ClassVar[str] = "parego"
    Settings = NoisyEISettings

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
        """qLogNParEGO with weights drawn from the simplex by ``seed``, or qLogPF (``q``: as
        for :meth:`NoisyEHVIGenerator.build_acquisition`)."""
        config = experiment.config
        _, constraints, notes = objective_and_constraints(config, fitted, outcome_constraints)
        if notes:
            info["notes"] = notes
        sampler = SobolQMCNormalSampler(torch.Size([self.settings.mc_samples]), seed=seed)
        pf = self.feasibility_first(
            config, fitted, X_baseline, X_pending, sampler, constraints, outcome_constraints, info
        )
        if pf is not None:
            return pf
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            weights = sample_simplex(len(config.objectives), dtype=DTYPE).squeeze(0)
        info["scalarization_weights"] = [round(float(w), 4) for w in weights]
        info["acquisition"] = "qLogNParEGO"
        return qLogNParEGO(
            fitted.joint,
            X_baseline=X_baseline,
            scalarization_weights=weights,
            sampler=sampler,
            objective=signed_objective(config, fitted),
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
        """One point at a time, each with its own scalarization weights, earlier points
        pending (the greedy ParEGO batch of Daulton et al. 2020)."""
        out: list[Candidate] = []
        for k in range(n):
            out += super().optimize_candidates(
                experiment, data, fitted, pending, 1, seed + 7919 * k, avoid, info,
                outcome_constraints,
            )  # fmt: skip
        return out
