"""Non-myopic Bayesian optimization: multi-step lookahead EI optimized as one-shot trees.

Implements Jiang, Jiang, Balandat, Karrer, Gardner & Garnett, "Efficient Nonmyopic Bayesian
Optimization via One-Shot Multi-Step Trees" (NeurIPS 2020) on BoTorch's
``qMultiStepLookahead``.

A ``k``-step lookahead policy values a point ``x_1`` by the expected improvement it earns now
*plus* the expected improvement of the best decisions ``k - 1`` steps later, each made after
fantasizing the outcomes of the earlier ones (their eq. 2-4)::

    v_k(x_1 | D) = EI(x_1 | D)
                   + E_{y_1 ~ p(y | x_1, D)} [ max_{x_2} v_{k-1}(x_2 | D + (x_1, y_1)) ]

The nested expectations are replaced by ``m_j`` fantasized outcomes per level (Gauss-Hermite
or quasi-Monte Carlo; we use scrambled Sobol normal samples, as BoTorch does), and the nested
maximizations by one decision variable per node of the resulting scenario tree. The key result
of the paper is that all these variables can be optimized *jointly* ("one-shot"): the maximum
of the tree-structured objective over ``(x_1, {x_2^j}, {x_3^{jl}}, ...)`` equals the nested
optimum. So one ``optimize_acqf`` call over ``q' = 1 + m_1 + m_1 m_2 + ...`` points solves the
whole tree; the first-stage point ``x_1`` is the proposal (``extract_candidates``).

Horizon ``k`` here counts *decisions*, as in the paper ("2-step", "3-step"): ``k = 1`` is plain
(log) EI, ``k = 2`` adds one lookahead level with ``num_fantasies = [m_1]``, ``k = 3`` two levels
(``[m_1, m_2]``). BoTorch counts the lookahead levels only (``batch_sizes`` has ``k - 1``
entries and ``valfunc_cls`` has ``k`` entries).

Choices this generator makes (and why):

* **Value functions.** Analytic ``ExpectedImprovement`` at every stage, as in the paper. Its
  ``best_f`` comes from :class:`IncumbentPosteriorMean`, an argument factory that returns, for
  the (fantasy) model of that stage, the largest *posterior mean* at the model's training
  inputs, with ``keepdim=True``. Two traps in BoTorch 0.18 make this necessary:
  ``make_best_f`` returns ``best_f`` without the trailing output dimension that analytic EI's
  posterior mean keeps, which fails with a tensor size mismatch as soon as there are
  fantasies; and it reads ``model.train_targets``, which are *standardized* when the model has
  an outcome transform, while EI compares against untransformed posterior means.
* **Noise.** With noisy observations the best raw value is biased upwards; the posterior mean
  of the incumbent is not (Letham et al. 2019 make the same argument). Using the posterior mean
  at every stage also treats fantasized observations, which carry observation noise, the same
  way. With noise-free data it equals the best observed value up to the GP's jitter.
* **Pending trials** (running or queued, and Sobol points of this ask) are handled by the
  *kriging believer*: the GP is conditioned on them with their posterior mean as observation,
  which removes their uncertainty without moving the mean, so the tree does not re-propose them
  and knows their neighbourhood will be explored. Analytic EI cannot take ``X_pending`` itself.
* **Batches** (``n > 1``): the first point is the multi-step proposal; the other ``n - 1``
  come from noisy-constrained EI (:class:`~assay.platform.generators.noisy_ei.NoisyEIGenerator`)
  with every earlier point pending. A lookahead tree for a parallel batch is possible but its
  cost grows with the batch; this is what ``info["batch_fallback"]`` reports.
* **Budget.** When the experiment has a trial budget (the job spec's ``max_trials``, else the
  experiment's: :attr:`~assay.platform.experiment.ExperimentConfig.trial_budget`, the same
  number the service stops at), the horizon shrinks to the evaluations left (this ask's
  included), so the tree never plans past the last one; the final evaluation
  is chosen by one-step EI, as in the authors' experiments.
* **Warm start.** The optimal tree of each ask is kept in the generator state (JSON lists) and
  seeds the next ask's optimization: BoTorch's ``warmstart_multistep`` trees, the previous
  tree shifted one level up (its first-level nodes were the planned next decisions) and fresh
  raw-sample trees form one pool from which the restarts are drawn.
* **Outcome constraints and unordered choice parameters** are rejected when the experiment is
  created (use ``noisy_ei``). Integer and ordered-choice parameters are optimized by continuous
  relaxation of the whole tree; the proposal is rounded to the nearest allowed value.

Example:
    >>> import assay
    >>> client = assay.Client()
    >>> exp = client.create_experiment(
    ...     name="lookahead",
    ...     parameters=[{"name": "x", "type": "float", "bounds": [0, 1]}],
    ...     objective="y",
    ...     generator="multi_step",
    ...     generator_settings={"horizon": 2, "num_fantasies": [4]},
    ... )
    >>> [trial] = client.ask(exp.id)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import ExpectedImprovement, LogExpectedImprovement
from botorch.acquisition.multi_step_lookahead import qMultiStepLookahead, warmstart_multistep
from botorch.exceptions.warnings import NumericsWarning, OptimizationWarning
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from botorch.optim.initializers import gen_batch_initial_conditions, initialize_q_batch
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from assay.platform.errors import ModelFitError, UnsupportedError
from assay.platform.experiment import Experiment, ExperimentConfig, TrialState
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
from assay.platform.generators.noisy_ei import NoisyEIGenerator
from assay.platform.models import FittedModel, MetricData, fit_outcome_models, training_data
from assay.platform.optimize import OptimizerOptions, optimize_acquisition
from assay.platform.space import DTYPE, ChoiceParameter, SearchSpace

#: Fantasies per lookahead level when ``num_fantasies`` is not given, by horizon. Chosen by
#: measurement (``benchmarks/multistep.py --fantasy-study``): see that script's docstring.
DEFAULT_FANTASIES: dict[int, tuple[int, ...]] = {1: (), 2: (8,), 3: (4, 4), 4: (4, 2, 2)}
#: Largest number of leaves ``prod(num_fantasies)`` accepted (cost is linear in it).
MAX_TREE_LEAVES = 256
#: Raw trees times leaves scored in one call when choosing restarts (bounds memory).
MAX_INIT_BATCH_LEAVES = 4096
#: How the previous optimal tree seeds the next optimization (see
#: ``MultiStepGenerator._warm_starts``); ``benchmarks/multistep.py --study warmstart``
#: compares the modes.
WARM_START_MODE = "pool"


class MultiStepSettings(GeneratorSettings):
    """Settings of :class:`MultiStepGenerator`.

    Args:
        horizon: Decisions in the lookahead tree, ``k`` in the paper (1 = one-step EI).
        num_fantasies: Fantasized outcomes per lookahead level (``horizon - 1`` numbers);
            default :data:`DEFAULT_FANTASIES` for the (possibly budget-shortened) horizon.
            A user value shortened by the budget keeps its first levels.
        n_initial: Quasi-random arms before the model takes over (default
            ``max(2 d + 1, 5)``); every existing arm counts, whoever proposed it.
        num_restarts: Trees refined by L-BFGS-B (jointly, in one batch).
        raw_samples: Random trees scored to choose the restarts (cold start) or perturbed
            copies of the previous optimum scored (warm start).
        maxiter: L-BFGS-B iterations.
        max_seconds: Time budget of one ask: the tree optimizer is stopped after what is left
            of it once the model is fitted (initialization is not interrupted).
        warm_start: Seed the tree from the previous ask's optimum and the GP hyperparameters
            from the previous fit.
        budget_aware: Shorten the horizon to the evaluations left under the trial budget.
    """

    horizon: int = Field(default=2, ge=1, le=4)
    num_fantasies: list[int] | None = None
    n_initial: int | None = Field(default=None, ge=1, le=10_000)
    num_restarts: int = Field(default=16, ge=1, le=256)
    raw_samples: int = Field(default=512, ge=8, le=65_536)
    maxiter: int = Field(default=50, ge=1, le=10_000)
    max_seconds: float = Field(default=30.0, gt=0, le=86_400)
    warm_start: bool = True
    budget_aware: bool = True

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


class IncumbentPosteriorMean:
    """Argument factory for EI value functions: ``best_f`` = best posterior mean at the data.

    For the (possibly fantasized, batched) model of a stage with training inputs ``X_train``
    (``batch_shape x n x d``, fantasized points included), returns
    ``best_f = max_i mu(X_train_i)`` with shape ``batch_shape x 1`` (``keepdim``), which is the
    shape analytic EI's posterior mean has (``batch_shape x m``, ``m = 1``). ``maximize=False``
    takes the minimum instead and tells EI to minimize.

    Args:
        maximize: Whether the objective is maximized.

    Example:
        >>> factory = IncumbentPosteriorMean(maximize=True)
        >>> factory(model=gp, X=X)["best_f"].shape  # doctest: +SKIP
        torch.Size([1])
    """

    def __init__(self, maximize: bool = True) -> None:
        self.maximize = maximize

    def __call__(self, model: Model, X: Tensor) -> dict[str, Any]:
        return {"best_f": incumbent_mean(model, self.maximize), "maximize": self.maximize}


def incumbent_mean(model: Model, maximize: bool = True) -> Tensor:
    """Best posterior mean over a single-output GP's training inputs, ``batch_shape x 1``."""
    X_train = model.train_inputs[0]
    mean = model.posterior(X_train).mean  # batch_shape x n x 1
    return mean.amax(dim=-2) if maximize else mean.amin(dim=-2)


def build_multi_step_acquisition(
    model: Model,
    horizon: int,
    num_fantasies: Sequence[int],
    *,
    maximize: bool = True,
    seed: int = 0,
) -> AcquisitionFunction:
    """The acquisition function of a ``horizon``-step lookahead policy.

    ``horizon == 1`` gives analytic log-EI (same maximizer as EI, better numerics); otherwise a
    ``qMultiStepLookahead`` with EI at each of its ``horizon`` stages and ``best_f`` from
    :class:`IncumbentPosteriorMean`.

    Args:
        model: A fitted single-output GP on the unit cube.
        horizon: Decisions in the tree (``k``).
        num_fantasies: ``horizon - 1`` fantasy counts, one per lookahead level.
        maximize: Whether the objective is maximized.
        seed: Seeds the fantasy samplers (stage ``i`` uses ``seed + i``).

    Example:
        >>> acqf = build_multi_step_acquisition(gp, 2, [8])  # doctest: +SKIP
        >>> q_aug = acqf.get_augmented_q_batch_size(1)  # 1 + 8 = 9
    """
    if horizon < 1 or len(num_fantasies) != horizon - 1:
        raise ValueError(f"horizon {horizon} needs {horizon - 1} fantasy counts")
    if horizon == 1:
        return LogExpectedImprovement(
            model, best_f=incumbent_mean(model, maximize).detach().squeeze(), maximize=maximize
        )
    return qMultiStepLookahead(
        model=model,
        batch_sizes=[1] * (horizon - 1),
        samplers=[
            SobolQMCNormalSampler(torch.Size([m]), seed=seed + i)
            for i, m in enumerate(num_fantasies)
        ],
        valfunc_cls=[ExpectedImprovement] * horizon,
        valfunc_argfacs=[IncumbentPosteriorMean(maximize)] * horizon,
    )


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


def condition_on_pending(model: Model, X_pending: Tensor) -> Model:
    """Kriging believer: condition ``model`` on ``(X_pending, posterior mean)``.

    The mean is unchanged, the variance at and near pending points shrinks as if they had
    been observed with the model's noise level.

    Args:
        model: A single-output ``SingleTaskGP`` in eval mode.
        X_pending: ``p x d`` model-space points.
    """
    with torch.no_grad():
        Y = model.posterior(X_pending).mean.detach()  # p x 1, original scale
    kwargs: dict[str, Any] = {}
    if isinstance(model.likelihood, FixedNoiseGaussianLikelihood):
        # noise is expected in the outcome-transformed space: the mean training noise
        kwargs["noise"] = model.likelihood.noise.mean().expand(Y.shape).clone()
    return model.condition_on_observations(X_pending, Y, **kwargs)


class MultiStepGenerator(Generator):
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

    def n_initial(self, space: SearchSpace) -> int:
        return self.settings.n_initial or max(2 * space.compact_dim + 1, 5)

    def fantasies_for(self, horizon: int) -> list[int]:
        if self.settings.num_fantasies is not None:
            return list(self.settings.num_fantasies[: horizon - 1])
        return list(DEFAULT_FANTASIES[horizon])

    def generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> GenerationResult:
        t_start = time.perf_counter()
        self.validate_experiment(experiment.config)
        space, config = experiment.search_space, experiment.config
        state = dict(experiment.generator_state)
        avoid = existing_signatures(experiment) | {SearchSpace.signature(p) for p in pending}
        info: dict[str, Any] = {"generator": self.name}
        live = [
            t for t in experiment.trials if t.state not in (TrialState.FAILED, TrialState.ABANDONED)
        ]
        data = training_data(experiment, [config.objective.name])
        n_arms = sum(len(t.arms) for t in live)
        n_sobol = min(n, max(0, self.n_initial(space) - n_arms))
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
        if not n_model:
            return GenerationResult(candidates, state, {}, info)

        try:
            fitted = fit_outcome_models(
                data,
                [config.objective.name],
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
        info["fit_seconds"] = round(fitted.fit_seconds, 4)
        if fitted.warnings:
            info["fit_warnings"] = fitted.warnings

        remaining = experiment.remaining_budget() if self.settings.budget_aware else None
        if remaining is not None:
            remaining -= n  # evaluations left after this ask
        k = effective_horizon(self.settings.horizon, remaining)
        fantasies = self.fantasies_for(k)
        info.update(horizon=self.settings.horizon, horizon_effective=k, num_fantasies=fantasies)

        fantasized = [a.parameters for a in experiment.pending_arms()] + [dict(p) for p in pending]
        fantasized += [c.parameters for c in candidates]
        pending = fantasized
        budget_left = self.settings.max_seconds - (time.perf_counter() - t_start)
        model_candidates: list[Candidate] = []
        try:
            first = self._lookahead_candidate(
                experiment, fitted, pending, k, fantasies, seed, avoid, state, budget_left, info
            )
            if first is not None:
                model_candidates.append(first)
                avoid.add(SearchSpace.signature(first.parameters))
                pending.append(first.parameters)
            n_rest = n_model - len(model_candidates)
            if n_rest:
                model_candidates += self._noisy_ei_points(
                    experiment, data, fitted, pending, n_rest, seed, avoid, info
                )
        except Exception as e:  # numerical failures fall back; anything else is a bug
            if not is_numerical_failure(e):
                raise
            if not model_candidates:  # a tree from a failed optimization must not seed the next
                state.pop("tree", None)
            model_candidates += acquisition_fallback(
                e, experiment, n_model - len(model_candidates), state=state, avoid=avoid,
                info=info, generator=self.name,
            )  # fmt: skip
        missing = n_model - len(model_candidates)
        if missing:
            sob, state["sobol_consumed"] = sobol_candidates(
                space, missing, seed=config.seed or 0,
                consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
            )  # fmt: skip
            info["deduplicated"] = missing
            model_candidates += sob
        info["generate_seconds"] = round(time.perf_counter() - t_start, 4)
        return GenerationResult(candidates + model_candidates, state, fitted.state, info)

    def _lookahead_candidate(
        self,
        experiment: Experiment,
        fitted: FittedModel,
        pending: list[dict[str, Any]],
        horizon: int,
        fantasies: list[int],
        seed: int,
        avoid: set[tuple],
        state: dict[str, Any],
        budget_left: float,
        info: dict[str, Any],
    ) -> Candidate | None:
        """Optimize the tree and return its first-stage point (``None`` if a duplicate)."""
        space, config = experiment.search_space, experiment.config
        maximize = not config.objective.minimize
        model: Model = fitted.model.models[0]
        if pending:
            model = condition_on_pending(model, space.encode_many(pending))
            info["pending_believed"] = len(pending)
        t0 = time.perf_counter()
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(seed)
            warnings.simplefilter("ignore", NumericsWarning)
            acqf = build_multi_step_acquisition(
                model, horizon, fantasies, maximize=maximize, seed=seed
            )
            if horizon == 1:
                info["acquisition"] = "LogExpectedImprovement"
                options = OptimizerOptions(
                    self.settings.num_restarts, self.settings.raw_samples, self.settings.maxiter
                )
                X, values = optimize_acquisition(acqf, space, 1, options)
                value = float(values[0])
                state.pop("tree", None)
            else:
                info["acquisition"] = "qMultiStepLookahead(ExpectedImprovement)"
                X_full, value = self._optimize_tree(
                    acqf, space, horizon, fantasies, state, max(budget_left, 0.5), info
                )
                X = acqf.extract_candidates(X_full).detach()
        info["optimize_seconds"] = round(time.perf_counter() - t0, 4)
        info["acquisition_value"] = value if math.isfinite(value) else None
        params = space.decode(X.reshape(1, -1))[0]
        if SearchSpace.signature(params) in avoid or not space.is_feasible(params):
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
            previous = state.get("tree") if s.warm_start else None
            init_limit = max(1, MAX_INIT_BATCH_LEAVES // math.prod(fantasies))
            if tree_matches(previous, horizon, fantasies, bounds.shape[-1]):
                ics = self._warm_starts(
                    acqf, space, torch.tensor(previous["X"], dtype=DTYPE), fantasies, init_limit
                )
            info["warm_started"] = ics is not None
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
                        "batch_limit": s.num_restarts,
                        # score the raw trees in few calls: each call costs a fixed overhead
                        "init_batch_limit": init_limit,
                    },
                    timeout_sec=max(timeout - (time.perf_counter() - t0), 0.1),
                    return_full_tree=True,
                    retry_on_optimization_warning=False,
                )
        finally:
            hook.remove()
        info["tree_size"] = q_aug
        info["acquisition_calls"] = calls[0]
        if caught:  # e.g. L-BFGS-B line-search failures: the best point so far is still used
            info["optimizer_warnings"] = sorted({str(w.message)[:120] for w in caught})
        X_full = X_full.detach().reshape(q_aug, -1)
        state["tree"] = {
            "horizon": horizon,
            "num_fantasies": list(fantasies),
            "dim": int(bounds.shape[-1]),
            "X": X_full.tolist(),
        }
        return X_full, float(value.reshape(-1)[0])

    def _warm_starts(
        self,
        acqf: qMultiStepLookahead,
        space: SearchSpace,
        X_prev: Tensor,
        fantasies: list[int],
        init_limit: int,
    ) -> Tensor | None:
        """``num_restarts`` starting trees seeded by the previous optimal tree ``X_prev``.

        ``WARM_START_MODE`` ``"botorch"``: ``warmstart_multistep`` alone (perturbed copies of
        the previous tree, its root included). ``"shifted"``: those plus
        :func:`shifted_trees`. ``"pool"`` (default): those plus ``num_restarts`` fresh
        raw-sample starts, so a warm start can add good trees but never crowd out the cold
        ones; the restarts are drawn from the pool by BoTorch's Boltzmann rule (the best is
        always kept).
        """
        s = self.settings
        bounds = space.model_bounds()
        with torch.no_grad():
            ics = warmstart_multistep(
                acq_function=acqf,
                bounds=bounds,
                num_restarts=s.num_restarts,
                raw_samples=s.raw_samples,
                full_optimizer=X_prev.unsqueeze(0),
            )
            if WARM_START_MODE == "botorch":
                return feasible_or_none(ics, space)
            parts = [ics, shifted_trees(X_prev, fantasies)]
            if WARM_START_MODE == "pool":
                parts.append(
                    gen_batch_initial_conditions(
                        acqf,
                        bounds,
                        q=acqf.get_augmented_q_batch_size(1),
                        num_restarts=s.num_restarts,
                        raw_samples=s.raw_samples,
                        options={"init_batch_limit": init_limit},
                        inequality_constraints=space.inequality_constraints(),
                    )
                )
            pool = feasible_or_none(torch.cat(parts), space)
            if pool is None:
                return None
            return initialize_q_batch(pool, acqf(pool), n=s.num_restarts)[0]

    def _noisy_ei_points(
        self,
        experiment: Experiment,
        data: dict[str, MetricData],
        fitted: FittedModel,
        pending: list[dict[str, Any]],
        n: int,
        seed: int,
        avoid: set[tuple],
        info: dict[str, Any],
    ) -> list[Candidate]:
        """The extra points of a batch (or a replacement for a duplicate) from noisy EI."""
        nei = NoisyEIGenerator()
        nei_info: dict[str, Any] = {}
        out = nei._optimize(experiment, data, fitted, list(pending), n, seed + 1, avoid, nei_info)
        info["batch_fallback"] = {
            "generator": nei.name,
            "points": len(out),
            "optimize_seconds": nei_info.get("optimize_seconds"),
        }
        return out


def tree_matches(tree: Any, horizon: int, fantasies: Sequence[int], dim: int) -> bool:
    """Whether a stored tree has the shape of the tree about to be optimized."""
    if not isinstance(tree, dict):
        return False
    X = tree.get("X")
    expected = 1 + sum(math.prod(fantasies[: i + 1]) for i in range(len(fantasies)))
    return (
        tree.get("horizon") == horizon
        and list(tree.get("num_fantasies", [])) == list(fantasies)
        and tree.get("dim") == dim
        and isinstance(X, list)
        and len(X) == expected
        and all(isinstance(r, list) and len(r) == dim for r in X)
    )


def shifted_trees(X_prev: Tensor, fantasies: Sequence[int]) -> Tensor:
    """The previous optimal tree moved one level up, once per first-level fantasy.

    After the previous root was evaluated, each of its first-level nodes ``x_2^j`` was the
    planned next decision for one fantasized outcome, which makes it a natural root now
    (BoTorch's ``warmstart_multistep`` instead keeps the old, just-evaluated root). Tree ``j``
    takes ``x_2^j`` as root and fills each level ``i`` with the old level-``i + 1``
    descendants of ``x_2^j`` (cycled to the level's size); the deepest level keeps the old
    deepest level. In BoTorch's layout a level-``i`` node's index is
    ``j_i f_{i-1} ... f_1 + ... + j_2 f_1 + j_1``, so the descendants of first-level node
    ``j`` are the indices ``= j (mod f_1)``.

    Args:
        X_prev: ``q' x d`` previous tree (``q' = 1 + f_1 + f_1 f_2 + ...``).
        fantasies: ``[f_1, ..., f_{k-1}]``.

    Returns:
        ``f_1 x q' x d`` candidate trees.
    """
    sizes = [math.prod(fantasies[:i]) for i in range(len(fantasies) + 1)]
    levels = list(torch.split(X_prev, sizes, dim=0))
    f1 = fantasies[0]
    trees = []
    for j in range(f1):
        parts = [levels[1][j : j + 1]]
        for i in range(1, len(levels)):
            if i + 1 < len(levels):
                below = levels[i + 1]
                desc = below[torch.arange(below.shape[0]) % f1 == j]
                idx = torch.arange(sizes[i]) % desc.shape[0]
                parts.append(desc[idx])
            else:
                parts.append(levels[i])
        trees.append(torch.cat(parts))
    return torch.stack(trees)


def feasible_or_none(X: Tensor, space: SearchSpace) -> Tensor | None:
    """The trees of ``X`` (clamped to the unit cube) that satisfy the linear parameter
    constraints, or ``None`` when none does (the optimizer then draws starts itself)."""
    constraints = space.inequality_constraints()
    X = X.clamp(0.0, 1.0)
    if not constraints:
        return X
    ok = torch.ones(X.shape[0], dtype=torch.bool)
    for idx, coef, rhs in constraints:
        ok &= ((X[..., idx] * coef).sum(-1) >= rhs - 1e-9).all(dim=-1)
    return X[ok] if bool(ok.any()) else None
