"""The ``multi_step`` generator: ``k``-step lookahead EI optimized as one-shot trees.

Implements Jiang, Jiang, Balandat, Karrer, Gardner & Garnett, "Efficient Nonmyopic Bayesian
Optimization via One-Shot Multi-Step Trees" (NeurIPS 2020): the lookahead value of a point
(:mod:`~assay.platform.generators.multi_step.acquisition`) is maximized over the whole
scenario tree *jointly*, one ``optimize_acqf`` call over its ``q' = 1 + m_1 + m_1 m_2 + ...``
points, because the maximum of the tree-structured objective equals the nested optimum (the
paper's key result); the first-stage point is the proposal (``extract_candidates``).

The initial design, the GP fit and the fallbacks are
:class:`~assay.platform.generators.base.ModelBasedGenerator`'s. Choices this generator makes
(and why):

* **Data.** Only the objective is modelled, from its raw observations.
* **Pending trials** (running or queued, and Sobol points of this ask) are believed
  (:mod:`~assay.platform.generators.multi_step.kriging_believer`): analytic EI cannot take
  ``X_pending`` itself.
* **Batches** (``n > 1``): the first point is the multi-step proposal; the other ``n - 1``
  come from noisy-constrained EI (:class:`~assay.platform.generators.noisy_ei.NoisyEIGenerator`)
  with every earlier point pending. A lookahead tree for a parallel batch is possible but its
  cost grows with the batch; this is what ``info["batch_fallback"]`` reports.
* **Budget.** When the experiment has a trial budget (the job spec's ``max_trials``, else the
  experiment's: :attr:`~assay.platform.experiment.ExperimentConfig.trial_budget`, the same
  number the service stops at), the horizon shrinks to the evaluations left (this ask's
  included), so the tree never plans past the last one; the final evaluation
  is chosen by one-step EI, as in the authors' experiments.
* **Starting trees** (issue 20). Uniform random starting trees leave the later decisions where
  the next EI is small and few L-BFGS-B iterations cannot repair that: the one-shot optimum
  fell short of the nested optimum at a fixed root. Later decisions start at good next
  decisions instead (:mod:`~assay.platform.generators.multi_step.initial_trees`), which with
  4 restarts from 64 raw trees and 10 iterations also keeps a ``k = 2`` ask cheap.
* **Warm start.** The optimal tree of each ask seeds the next ask's optimization
  (:mod:`~assay.platform.generators.multi_step.warm_start`, mode ``warm_start_mode``).
* **Time.** ``max_seconds`` bounds the ask: the tree optimizer gets what is left of it once
  the model is fitted. With more than :data:`FAST_PATH_MIN_SECONDS` left it runs BoTorch's
  batched L-BFGS-B (each restart its own problem, no timeout) bounded by ``maxiter`` and
  :data:`LINE_SEARCH_STEPS` line-search steps per iteration: this halved a warm-started
  ``k = 2`` ask at the same tree value (issue 19 target 6, ``PROGRESS.md``).
* **Root choice** (opt-in, ``root_choice="boltzmann"``; default ``"best"``). The proposal
  is normally the root of the best optimized tree. BoTorch's own root gradient is not the
  derivative of its value (issue 20), and that accidental perturbation seemed to help where
  the GP models poorly; the opt-in replaces it by deliberate exploration: Boltzmann (softmax)
  selection among the restarts' optimized trees (Sutton & Barto, *Reinforcement Learning: An
  Introduction*, 2nd ed. 2018, §2.3 & §13.1), restart ``r`` with probability
  ``p_r ∝ exp((v_r - max v) / τ)``, ``τ = root_temperature · std(v)`` (the spread of the
  restarts' tree values, so the choice does not depend on the objective's scale), drawn with
  the ask's seed (:func:`boltzmann_choice`).
* **Noise-free objectives** should set ``noise="fixed"`` (a small fixed noise, as the
  authors do): an inferred noise on noise-free data smoothed the narrow valley of
  Goldstein-Price away and left horizon 2 stuck (issue 20).
* **Outcome constraints and unordered choice parameters** are rejected when the experiment is
  created (use ``noisy_ei``). Integer and ordered-choice parameters are optimized by continuous
  relaxation of the whole tree; the proposal is rounded to the nearest allowed value.

Owns: :class:`MultiStepGenerator`, :class:`MultiStepSettings`, the default fantasies and tree
limits, and :func:`effective_horizon`.

May import: torch, botorch, pydantic, the other modules of this package and, of ``assay``, the
:mod:`assay.platform` modules below the generators, :mod:`assay.platform.generators.base` and
:mod:`assay.platform.generators.noisy_ei` (for the rest of a batch).

Example:
    >>> gen = MultiStepGenerator({"horizon": 3, "num_fantasies": [4, 4]})
    >>> result = gen.generate(experiment, n=1, seed=0)  # doctest: +SKIP
    >>> result.info["horizon_effective"], result.info["optimize_seconds"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar, Literal

import torch
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead
from botorch.exceptions.warnings import NumericsWarning, OptimizationWarning
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from assay.platform.errors import UnsupportedError
from assay.platform.experiment import ExperimentConfig
from assay.platform.generators.base import (
    Candidate,
    GenerationContext,
    ModelBasedGenerator,
    ModelBasedSettings,
)
from assay.platform.generators.multi_step.acquisition import (
    FantasySampler,
    build_multi_step_acquisition,
)
from assay.platform.generators.multi_step.incumbent import IncumbentKind
from assay.platform.generators.multi_step.initial_trees import seeded_trees
from assay.platform.generators.multi_step.kriging_believer import condition_on_pending
from assay.platform.generators.multi_step.warm_start import (
    WarmStartMode,
    feasible_or_none,
    stored_tree,
    tree_matches,
    warm_start_trees,
)
from assay.platform.generators.noisy_ei import NoisyEIGenerator
from assay.platform.models import FittedModel, training_data
from assay.platform.optimize import OptimizerOptions, optimize_acquisition
from assay.platform.parameters import ChoiceParameter
from assay.platform.space import DTYPE, SearchSpace

#: Fantasies per lookahead level when ``num_fantasies`` is not given, by horizon. Chosen by
#: measurement (``benchmarks/multistep.py --fantasy-study``): see that script's docstring.
DEFAULT_FANTASIES: dict[int, tuple[int, ...]] = {1: (), 2: (8,), 3: (4, 4), 4: (4, 2, 2)}
#: Observation-noise variance of ``noise="fixed"``, relative to the objective's sample variance
#: (a noise-free objective modelled with a small fixed noise, as the authors do).
FIXED_NOISE = 1e-4
#: Line-search steps per L-BFGS-B iteration of the tree optimizer (SciPy's default is 20): near
#: a warm-started optimum the line search spent most of the evaluations; 5 halved the ask at
#: the same tree value (PROGRESS.md, issue 19 target 6).
LINE_SEARCH_STEPS = 5
#: Below this many seconds left, the tree optimizer runs with a timeout (BoTorch's slower
#: joint L-BFGS-B); above it, the batched fast path bounded by iterations.
FAST_PATH_MIN_SECONDS = 5.0
#: Largest number of leaves ``prod(num_fantasies)`` accepted (cost is linear in it).
MAX_TREE_LEAVES = 256
#: Raw trees times leaves scored in one call when choosing restarts (bounds memory).
MAX_INIT_BATCH_LEAVES = 4096


class MultiStepSettings(ModelBasedSettings):
    """Settings of :class:`MultiStepGenerator` (``n_initial``: see
    :class:`~assay.platform.generators.base.ModelBasedSettings`).

    Args:
        horizon: Decisions in the lookahead tree, ``k`` in the paper (1 = one-step EI).
        num_fantasies: Fantasized outcomes per lookahead level (``horizon - 1`` numbers);
            default :data:`DEFAULT_FANTASIES` for the (possibly budget-shortened) horizon.
            A user value shortened by the budget keeps its first levels.
        num_restarts: Trees refined by L-BFGS-B (jointly, in one batch).
        raw_samples: Random trees scored to choose the restarts (cold start) or perturbed
            copies of the previous optimum scored (warm start).
        maxiter: L-BFGS-B iterations.
        max_seconds: Time budget of one ask: the tree optimizer is stopped after what is left
            of it once the model is fitted (initialization is not interrupted).
        warm_start: Seed the tree from the previous ask's optimum and the GP hyperparameters
            from the previous fit.
        warm_start_mode: How the previous optimal tree seeds the next optimization:
            ``"pool"`` (default), ``"shifted"`` or ``"botorch"`` (see
            :mod:`~assay.platform.generators.multi_step.warm_start`); ignored without
            ``warm_start``.
        budget_aware: Shorten the horizon to the evaluations left under the trial budget.
        incumbent: Each stage's EI ``best_f``: ``"posterior_mean"``, ``"observed"`` or
            ``"root"`` (see :mod:`~assay.platform.generators.multi_step.incumbent`).
        fantasy_sampler: ``"sobol"`` or ``"quantile"`` fantasized outcomes (see
            :mod:`~assay.platform.generators.multi_step.acquisition`).
        noise: ``"inferred"`` (the GP fits the noise level) or ``"fixed"``: observations
            without a standard error get the small fixed noise variance :data:`FIXED_NOISE`
            (relative to their variance); observations with one keep it.
        tree_init: Starting trees: ``"seeded"`` (uniform roots, later decisions at good next
            decisions: :mod:`~assay.platform.generators.multi_step.initial_trees`) or
            ``"random"`` (BoTorch's uniform raw trees).
        dense_tree: Evaluate the tree on dense tensors
            (:mod:`~assay.platform.generators.multi_step.dense_tree`: BoTorch's value with
            exact gradients, several times cheaper); ``False``: BoTorch's
            ``qMultiStepLookahead`` evaluation (models the dense path does not support use it
            anyway).
        root_choice: ``"best"`` (default): propose the root of the best optimized tree;
            ``"boltzmann"``: draw the tree among the restarts' optimized trees with
            probability ``∝ exp((value - best) / τ)`` (:func:`boltzmann_choice`).
        root_temperature: ``τ / std`` of the restarts' tree values for ``"boltzmann"``
            (small: nearly always the best tree; large: nearly uniform over restarts).
            Default 3: about half of the asks then move the root by > 0.1 of the range.
    """

    horizon: int = Field(default=2, ge=1, le=4)
    num_fantasies: list[int] | None = None
    # cheap by default (issue 19: a k = 2 ask within 2x a noisy_ei ask): with seeded starting
    # trees, 4 restarts from 64 raw trees reach a better tree than 16 from 512 random ones
    # (benchmarks/multistep_diagnosis.py --exp oneshot)
    num_restarts: int = Field(default=4, ge=1, le=256)
    raw_samples: int = Field(default=64, ge=8, le=65_536)
    maxiter: int = Field(default=10, ge=1, le=10_000)
    max_seconds: float = Field(default=30.0, gt=0, le=86_400)
    warm_start_mode: WarmStartMode | Literal["none"] = "pool"
    budget_aware: bool = True
    incumbent: IncumbentKind = "posterior_mean"
    fantasy_sampler: FantasySampler = "sobol"
    noise: Literal["inferred", "fixed"] = "inferred"
    tree_init: Literal["seeded", "random"] = "seeded"
    dense_tree: bool = True
    root_choice: Literal["best", "boltzmann"] = "best"
    # measured (benchmarks/results/multistep-div/): 1 changed nothing, 3 helped where the GP models
    # poorly (dropwave, twobasin2) and cost a little where it models well (sixhumpcamel)
    root_temperature: float = Field(default=3.0, gt=0, le=1_000)

    @field_validator("num_fantasies")
    @classmethod
    def _check_fantasies(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if any(not 1 <= m <= 64 for m in v):
            raise ValueError("each number of fantasies must be in [1, 64]")
        if math.prod(v) > MAX_TREE_LEAVES:
            raise ValueError(
                f"the tree would have {math.prod(v)} leaves (the product of num_fantasies); "
                f"at most {MAX_TREE_LEAVES} are allowed"
            )
        return v

    @model_validator(mode="after")
    def _check_lengths(self) -> MultiStepSettings:
        if self.num_fantasies is not None and len(self.num_fantasies) != self.horizon - 1:
            raise ValueError(
                f"num_fantasies needs horizon - 1 = {self.horizon - 1} entries (one per "
                f"lookahead level), got {len(self.num_fantasies)}"
            )
        return self


def boltzmann_choice(values: Tensor, temperature: float, seed: int) -> tuple[int, float]:
    """Draw one index with probability ``p_r ∝ exp((v_r - max v) / τ)``,
    ``τ = temperature · std(v)`` (Boltzmann / softmax selection: Sutton & Barto 2018, §2.3).

    Non-finite values get probability 0; with no spread (one value, or all equal) the best
    index is returned.

    Args:
        values: The candidates' values (higher is better), shape ``(r,)``.
        temperature: ``τ`` relative to the standard deviation of the finite values.
        seed: Seeds the draw (a private generator: the global RNG is untouched).

    Returns:
        The index drawn and its probability.
    """
    v = values.detach().reshape(-1).to(torch.float64)
    finite = torch.isfinite(v)
    if not bool(finite.any()):
        return 0, 1.0
    best = int(torch.where(finite, v, v.new_tensor(-math.inf)).argmax())
    spread = float(v[finite].std()) if int(finite.sum()) > 1 else 0.0
    if not math.isfinite(spread) or spread <= 0:
        return best, 1.0
    logits = torch.where(finite, (v - v[best]) / (temperature * spread), -math.inf)
    probs = torch.softmax(logits, dim=0)
    g = torch.Generator().manual_seed(int(seed) % (2**63))
    i = int(torch.multinomial(probs, 1, generator=g))
    return i, float(probs[i])


def effective_horizon(horizon: int, remaining_after_ask: int | None) -> int:
    """``min(horizon, 1 + remaining)``: never plan past the last evaluation of the budget.

    Args:
        horizon: The configured horizon ``k``.
        remaining_after_ask: Evaluations the budget allows after this ask (``None``: no
            budget).
    """
    if remaining_after_ask is None:
        return horizon
    return max(1, min(horizon, 1 + max(0, remaining_after_ask)))


class MultiStepGenerator(ModelBasedGenerator):
    """Sobol initial design, then ``k``-step lookahead EI optimized as a one-shot tree.

    See the module docstring for the method and its choices.

    Example:
        >>> gen = MultiStepGenerator({"horizon": 3, "num_fantasies": [4, 4]})
        >>> result = gen.generate(experiment, n=1, seed=0)  # doctest: +SKIP
        >>> result.info["horizon_effective"], result.info["optimize_seconds"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "multi_step"
    Settings = MultiStepSettings

    def validate_experiment(self, experiment_config: ExperimentConfig) -> None:
        """Reject outcome constraints and unordered choice parameters up front."""
        config = experiment_config
        if config.outcome_constraints:
            raise UnsupportedError(
                "generator 'multi_step' does not support outcome constraints "
                f"({', '.join(c.expression for c in config.outcome_constraints)}); use "
                "generator 'noisy_ei', which models them",
                field="outcome_constraints",
            )
        for p in config.search_space.tunable:
            if isinstance(p, ChoiceParameter) and p.is_one_hot:
                raise UnsupportedError(
                    f"generator 'multi_step' does not support unordered choice parameters "
                    f"(parameter {p.name!r}); make it ordered if its values have an order, or "
                    "use generator 'noisy_ei'",
                    field=f"parameters.{p.name}",
                )

    def acquisition_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`build_multi_step_acquisition` set by the settings."""
        s = self.settings
        return {
            "incumbent": s.incumbent,
            "fantasy_sampler": s.fantasy_sampler,
            "dense": s.dense_tree,
        }

    def fantasies_for(self, horizon: int) -> list[int]:
        if self.settings.num_fantasies is not None:
            return list(self.settings.num_fantasies[: horizon - 1])
        return list(DEFAULT_FANTASIES[horizon])

    def load_data(self, ctx: GenerationContext) -> None:
        """The raw observations of the objective, the only outcome modelled."""
        ctx.data = training_data(ctx.experiment, [ctx.experiment.config.objective.name])
        if self.settings.noise == "fixed":
            for name, d in ctx.data.items():
                if d.Yvar is None and d.n:
                    var = float(d.Y.var()) if d.n > 1 else 1.0
                    var = var if math.isfinite(var) and var > 0 else 1.0
                    ctx.data[name] = replace(d, Yvar=torch.full_like(d.Y, FIXED_NOISE * var))

    def propose(self, ctx: GenerationContext, fitted: FittedModel, n: int) -> Iterator[Candidate]:
        """The lookahead proposal, then noisy EI for the rest of a batch (or in place of a
        proposal that duplicates an existing arm)."""
        info = ctx.info
        remaining = ctx.experiment.remaining_budget() if self.settings.budget_aware else None
        if remaining is not None:
            remaining -= ctx.n  # evaluations left after this ask
        k = effective_horizon(self.settings.horizon, remaining)
        fantasies = self.fantasies_for(k)
        info.update(horizon=self.settings.horizon, horizon_effective=k, num_fantasies=fantasies)
        budget_left = self.settings.max_seconds - (time.perf_counter() - ctx.started)
        try:
            first = self._lookahead_candidate(ctx, fitted, k, fantasies, budget_left)
            if first is not None:
                ctx.avoid.add(SearchSpace.signature(first.parameters))
                ctx.pending.append(first.parameters)
                yield first
            n_rest = n - (first is not None)
            if n_rest:
                yield from self._noisy_ei_points(ctx, fitted, n_rest)
        finally:
            info["generate_seconds"] = round(time.perf_counter() - ctx.started, 4)

    def on_acquisition_failure(self, ctx: GenerationContext, proposed: list[Candidate]) -> None:
        """A tree from a failed optimization must not seed the next one."""
        if not proposed:
            ctx.state.pop("tree", None)

    def _lookahead_candidate(
        self,
        ctx: GenerationContext,
        fitted: FittedModel,
        horizon: int,
        fantasies: list[int],
        budget_left: float,
    ) -> Candidate | None:
        """Optimize the tree and return its first-stage point (``None`` if a duplicate)."""
        space, config, info = ctx.experiment.search_space, ctx.experiment.config, ctx.info
        maximize = not config.objective.minimize
        model: Model = fitted.model.models[0]
        if ctx.pending:
            model = condition_on_pending(model, space.encode_many(ctx.pending))
            info["pending_believed"] = len(ctx.pending)
        t0 = time.perf_counter()
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(ctx.seed)
            warnings.simplefilter("ignore", NumericsWarning)
            acqf = build_multi_step_acquisition(
                model, horizon, fantasies, maximize=maximize, seed=ctx.seed,
                **self.acquisition_options(),
            )  # fmt: skip
            if horizon == 1:
                info["acquisition"] = "LogExpectedImprovement"
                # analytic log-EI is cheap: at least the platform's usual effort, so that
                # horizon 1 is a full-strength EI baseline, not one hobbled by the tree defaults
                base, st = OptimizerOptions(), self.settings
                options = OptimizerOptions(
                    max(st.num_restarts, base.num_restarts),
                    max(st.raw_samples, base.raw_samples),
                    max(st.maxiter, base.maxiter),
                )
                X, values = optimize_acquisition(acqf, space, 1, options)
                value = float(values[0])
                ctx.state.pop("tree", None)
            else:
                info["acquisition"] = "qMultiStepLookahead(ExpectedImprovement)"
                X_full, value = self._optimize_tree(
                    acqf, space, horizon, fantasies, ctx.state, max(budget_left, 0.5), info,
                    seed=ctx.seed,
                )  # fmt: skip
                X = acqf.extract_candidates(X_full).detach()
        info["optimize_seconds"] = round(time.perf_counter() - t0, 4)
        info["acquisition_value"] = value if math.isfinite(value) else None
        params = space.decode(X.reshape(1, -1))[0]
        if SearchSpace.signature(params) in ctx.avoid or not space.is_feasible(params):
            info["duplicate_proposal"] = True
            return None
        return Candidate(
            params,
            self.name,
            {
                "acquisition": info["acquisition"],
                "acquisition_value": info["acquisition_value"],
                "horizon": horizon,
            },
        )

    def _optimize_tree(
        self,
        acqf: qMultiStepLookahead,
        space: SearchSpace,
        horizon: int,
        fantasies: list[int],
        state: dict[str, Any],
        timeout: float,
        info: dict[str, Any],
        seed: int = 0,
    ) -> tuple[Tensor, float]:
        """One-shot optimization of the whole tree; keeps the optimum in ``state["tree"]``."""
        s = self.settings
        bounds = space.model_bounds()
        q_aug = acqf.get_augmented_q_batch_size(1)
        t0 = time.perf_counter()
        calls = [0]  # forward calls: the cost driver (each has a fixed Python overhead)
        hook = acqf.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        try:
            ics = None
            previous = state.get("tree") if s.warm_start and s.warm_start_mode != "none" else None
            init_limit = max(1, MAX_INIT_BATCH_LEAVES // math.prod(fantasies))
            warm = tree_matches(previous, horizon, fantasies, bounds.shape[-1])
            if warm:
                ics = warm_start_trees(
                    acqf, space, torch.tensor(previous["X"], dtype=DTYPE), fantasies,
                    mode="shifted" if s.tree_init == "seeded" else s.warm_start_mode,
                    num_restarts=s.num_restarts, raw_samples=s.raw_samples,
                    init_limit=init_limit,
                )  # fmt: skip
            if s.tree_init == "seeded":
                with torch.no_grad():
                    raw = seeded_trees(acqf, space, s.raw_samples, seed=seed)
                    pool = feasible_or_none(raw if ics is None else torch.cat([raw, ics]), space)
                    if pool is not None:
                        values = torch.cat([acqf(b) for b in pool.split(init_limit)])
                        ics = initialize_q_batch(pool, values, n=s.num_restarts)[0]
            info["warm_started"] = warm and ics is not None
            # SciPy's batched L-BFGS-B (BoTorch's fast path: every restart its own problem,
            # all evaluated in one call) runs only without a timeout; the iterations and
            # line-search steps bound its work, so the timeout is kept for short budgets only
            remaining = max(timeout - (time.perf_counter() - t0), 0.1)
            timeout_sec = remaining if remaining < FAST_PATH_MIN_SECONDS else None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", OptimizationWarning)
                warnings.simplefilter("always", RuntimeWarning)
                X_full, value = optimize_acqf(
                    acqf,
                    bounds=bounds,
                    q=q_aug,
                    num_restarts=s.num_restarts,
                    raw_samples=s.raw_samples,
                    batch_initial_conditions=ics,
                    inequality_constraints=space.inequality_constraints(),
                    options={
                        "maxiter": s.maxiter,
                        # an L-BFGS-B option (linear constraints switch to SLSQP)
                        **({} if space.inequality_constraints() else {"maxls": LINE_SEARCH_STEPS}),
                        "batch_limit": s.num_restarts,
                        # score the raw trees in few calls: each call costs a fixed overhead
                        "init_batch_limit": init_limit,
                    },
                    timeout_sec=timeout_sec,
                    return_full_tree=True,
                    retry_on_optimization_warning=False,
                    # every restart's tree, to choose among them (``root_choice``)
                    **({} if s.root_choice == "best" else {"return_best_only": False}),
                )
            if s.root_choice == "boltzmann":
                values = value.detach().reshape(-1)
                i, p = boltzmann_choice(values, s.root_temperature, seed)
                rank = int((values > values[i]).sum())
                best = int(values.argmax())
                # how far the chosen root moved from the best tree's (unit-cube model space)
                shift = float((X_full[i, 0] - X_full[best, 0]).abs().max())
                info["root_choice"] = {
                    "rank": rank,
                    "probability": round(p, 4),
                    "root_shift": round(shift, 4),
                }
                X_full, value = X_full[i], values[i]
        finally:
            hook.remove()
        info["tree_size"] = q_aug
        info["acquisition_calls"] = calls[0]
        if caught:  # e.g. L-BFGS-B line-search failures: the best point so far is still used
            info["optimizer_warnings"] = sorted({str(w.message)[:120] for w in caught})
        X_full = X_full.detach().reshape(q_aug, -1)
        state["tree"] = stored_tree(X_full, horizon, fantasies)
        return X_full, float(value.reshape(-1)[0])

    def _noisy_ei_points(
        self, ctx: GenerationContext, fitted: FittedModel, n: int
    ) -> list[Candidate]:
        """The extra points of a batch (or a replacement for a duplicate) from noisy EI."""
        nei = NoisyEIGenerator()
        nei_info: dict[str, Any] = {}
        out = nei.optimize_candidates(
            ctx.experiment, ctx.data, fitted, list(ctx.pending), n, ctx.seed + 1, ctx.avoid,
            nei_info,
        )  # fmt: skip
        ctx.info["batch_fallback"] = {
            "generator": nei.name,
            "points": len(out),
            "optimize_seconds": nei_info.get("optimize_seconds"),
        }
        return out
