"""The generator protocol, and the flow every model-based generator shares.

A generator is stateless between calls except for the JSON ``generator_state`` and
``model_state`` it returns, which storage persists with the experiment and hands back on the
next ask (stateless generation: any server process can serve the next ask).

:class:`ModelBasedGenerator` is the one home of what ``noisy_ei`` and ``multi_step`` have in
common: the size of the quasi-random initial design and which arms count toward it, the GP fit
(warm-started from the stored hyperparameters), the quasi-random fallbacks when the fit or the
acquisition optimization fails numerically, and the top-up of proposals lost to deduplication.
A subclass says what data it models and how it proposes points from the fitted model.

Owns: :class:`Generator`, :class:`GeneratorSettings`, :class:`Candidate`,
:class:`GenerationResult`, :class:`ModelBasedGenerator` and its :class:`GenerationContext`,
the Sobol helpers (:func:`sobol_candidates`, :func:`next_sobol`), :func:`existing_signatures`
and the numerical-failure policy (:func:`is_numerical_failure`, :func:`acquisition_fallback`).

May import: pydantic and, of ``assay``, only :mod:`assay.platform` modules below the
generators (``errors``, ``experiment``, ``space``, ``models``, ``optimize``, ``relative``).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic
from pydantic import Field

from assay.platform.early_stopping import EarlyStoppedData
from assay.platform.errors import AssayError, GenerationError, ModelFitError, ValidationError
from assay.platform.experiment import Experiment, OutcomeConstraint, TrialState
from assay.platform.models import (
    FittedModel,
    MetricData,
    exact_solves,
    fit_outcome_models,
    training_data,
)
from assay.platform.optimize import with_generator_threads
from assay.platform.relative import control_arm_names
from assay.platform.space import SearchSpace

log = logging.getLogger("assay.generators")


@dataclass
class Candidate:
    """A proposed assignment with how it was produced."""

    parameters: dict[str, Any]
    generator: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationResult:
    """What one ask produced, plus state for the next ask.

    Args:
        candidates: The proposals, in order.
        generator_state: JSON generator state to persist (replaces the old one).
        model_state: JSON model hyperparameters to persist (``{}`` keeps the old one).
        info: Timings and decisions (fit seconds, acquisition used, fallbacks) for logs/UI.
    """

    candidates: list[Candidate]
    generator_state: dict[str, Any]
    model_state: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class GeneratorSettings(pydantic.BaseModel):
    """Base of every generator's settings; unknown keys are rejected."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Generator(ABC):
    """Proposes new arms for an experiment.

    Subclasses set ``name`` and ``Settings`` and implement :meth:`generate`.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[GeneratorSettings]] = GeneratorSettings

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        try:
            self.settings = self.Settings(**dict(settings or {}))
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ValidationError(
                f"generator_settings.{loc}: {err['msg']} (generator {self.name!r})",
                field=f"generator_settings.{loc}",
            ) from None

    @abstractmethod
    def generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> GenerationResult:
        """Propose ``n`` new arms, avoiding every arm the experiment already has.

        ``pending``: parameter assignments that will be evaluated with the new arms but are
        not in the experiment's pending trials yet (arms carried into the same batch with
        ``include=``): model-based generators fantasize them as ``X_pending``, and no
        generator proposes one of them again."""

    def validate_experiment(self, experiment_config: Any) -> None:  # noqa: B027
        """Reject configurations this generator cannot handle (called at creation)."""


def existing_signatures(
    experiment: Experiment, pending: Sequence[Mapping[str, Any]] = ()
) -> set[tuple]:
    """Signatures no new arm may have: arms already in the experiment (except
    failed-before-running ones), the control arm (``status_quo``), which is never proposed as a
    new arm, and the ``pending`` assignments carried into the ask."""
    out = {
        SearchSpace.signature(a.parameters)
        for t in experiment.trials
        if t.state is not TrialState.ABANDONED
        for a in t.arms
    }
    if experiment.config.status_quo is not None:
        out.add(SearchSpace.signature(experiment.config.status_quo))
    out.update(SearchSpace.signature(p) for p in pending)
    return out


def sobol_candidates(
    space: SearchSpace,
    n: int,
    *,
    seed: int,
    consumed: int,
    avoid: set[tuple],
    generator: str = "sobol",
) -> tuple[list[Candidate], int]:
    """``n`` new scrambled-Sobol points not in ``avoid``; returns them and the new position.

    Raises:
        GenerationError: when the (discrete) space has no unused point left.
    """
    out: list[Candidate] = []
    seen = set(avoid)
    for _ in range(64):
        points, consumed = space.sobol(n - len(out), seed=seed, skip=consumed)
        for p in points:
            sig = SearchSpace.signature(p)
            if sig not in seen:
                seen.add(sig)
                out.append(Candidate(p, generator, {"sobol_index": consumed}))
        if len(out) >= n:
            return out[:n], consumed
    raise GenerationError(
        f"could only find {len(out)} of {n} new points: the search space looks exhausted",
        details={"found": len(out), "requested": n},
    )


def next_sobol(
    experiment: Experiment, n: int, *, state: dict[str, Any], avoid: set[tuple]
) -> list[Candidate]:
    """The next ``n`` new points of the experiment's scrambled Sobol sequence.

    The sequence is seeded by the experiment's seed and continues where the generator state
    left it (``state["sobol_consumed"]``, updated in place); the points' signatures are added
    to ``avoid``. ``n == 0`` changes nothing.

    Raises:
        GenerationError: when the (discrete) space has no unused point left.
    """
    if n <= 0:
        return []
    out, state["sobol_consumed"] = sobol_candidates(
        experiment.search_space, n, seed=experiment.config.seed or 0,
        consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
    )  # fmt: skip
    avoid.update(SearchSpace.signature(c.parameters) for c in out)
    return out


def is_numerical_failure(error: BaseException) -> bool:
    """Whether ``error`` is a numerical failure of model-based generation (a non-PSD
    covariance, a failed Cholesky, NaNs in the optimizer: ``NotPSDError``, ``NanError``,
    ``torch.linalg.LinAlgError`` and other ``RuntimeError``/``ValueError``), which should fall
    back to a quasi-random point rather than fail the ask. Assay's own errors (validation,
    unsupported settings, exhausted spaces) are not: they mean what they say."""
    return isinstance(error, RuntimeError | ValueError) and not isinstance(error, AssayError)


def acquisition_fallback(
    error: BaseException,
    experiment: Experiment,
    n: int,
    *,
    state: dict[str, Any],
    avoid: set[tuple],
    info: dict[str, Any],
    generator: str,
) -> list[Candidate]:
    """``n`` Sobol points standing in for model-based ones after a numerical failure.

    The points respect the linear parameter constraints (:meth:`SearchSpace.sobol` rejects
    infeasible ones) and avoid every existing arm; the failure is logged and recorded where it
    is visible: ``info["fallback"]`` (stored with the trial's generation metadata), each
    candidate's ``metadata["fallback"]``, and the generator state (``acquisition_fallbacks``,
    a count, and ``last_acquisition_fallback``: trial index and error).

    Args:
        error: What acquisition optimization raised.
        experiment: The experiment being asked.
        n: Points needed.
        state: The generator state being built (updated in place).
        avoid: Signatures to avoid (updated with the new points).
        info: The ask's info dict (updated in place).
        generator: Name of the generator falling back (for the log).
    """
    reason = f"{type(error).__name__}: {error}"[:500]
    log.warning(
        "experiment %s: %s acquisition failed (%s); proposing %d Sobol point(s) instead",
        experiment.id, generator, reason, n,
    )  # fmt: skip
    info["fallback"] = f"sobol: acquisition failed: {reason}"
    state["acquisition_fallbacks"] = int(state.get("acquisition_fallbacks", 0)) + 1
    state["last_acquisition_fallback"] = {"trial_index": len(experiment.trials), "error": reason}
    sob = next_sobol(experiment, n, state=state, avoid=avoid)
    for c in sob:
        c.metadata["fallback"] = f"acquisition failed: {reason}"
    return sob


# ---------------------------------------------------------------------------------------------
# Model-based generators: Sobol initial design, then a GP and an acquisition function
# ---------------------------------------------------------------------------------------------


def centre_candidate(space: SearchSpace, avoid: set[tuple]) -> Candidate | None:
    """The centre of the search space as a candidate (generator ``"centre"``), or ``None``
    when it is not a new feasible arm.

    The centre is the image of ``(1/2, ..., 1/2)`` under the uniform-design map
    :meth:`SearchSpace.from_unit_row` (the midpoint of each float range in its own scale, so
    the geometric mean of a log-scale range; the middle integer; the middle category of a
    choice, as the Sobol design maps them). It is ``None`` when it violates the linear
    parameter constraints or is an existing arm (e.g. the control).
    """
    params = space.from_unit_row([0.5] * space.compact_dim)
    if SearchSpace.signature(params) in avoid or not space.is_feasible(params):
        return None
    return Candidate(params, "centre", {"initial_design": "centre"})


def initial_design_arms(experiment: Experiment) -> int:
    """How many arms count toward the initial design (see :class:`ModelBasedGenerator`):
    every arm with observed data (:meth:`Experiment.observed`) plus every pending arm
    (:meth:`Experiment.pending_arms`), whatever produced it."""
    return len(experiment.observed()) + len(experiment.pending_arms())


class ModelBasedSettings(GeneratorSettings):
    """Settings every model-based generator has.

    Args:
        n_initial: Size of the quasi-random initial design (default ``max(2 d + 1, 5)``,
            ``d`` = number of tunable parameters; in an experiment run in batch trials, at
            most the first batch's new arms). Observed and pending arms of any origin count
            toward it (see :class:`ModelBasedGenerator`).
        warm_start: Start the GP hyperparameter fit from the previous ask's optimum (and, for
            ``multi_step``, the tree optimization from the previous optimal tree).
        centre_first: Make the centre of the search space (:func:`centre_candidate`) the
            first arm of the initial design, as Ax does. ``None``: the generator's default
            (:attr:`ModelBasedGenerator.centre_first_default`: on for the multi-objective
            generators, off otherwise; the evidence is in ``benchmarks/centre_point.py``'s
            docstring).
        early_stopped: What the model makes of early-stopped trials
            (:func:`~assay.platform.early_stopping.early_stopped_values`): ``"exclude"``
            (only completed trials are data), ``"last_value"`` (the last value each stopped
            trial reported) or ``"predicted"`` (its final value as the curve-transfer
            ensemble of the ``model`` early-stopping strategy extrapolates it). With either
            of the last two, stopped trials also count toward the initial design. The
            service builds the values from the trials' reports at each ask
            (:meth:`~assay.platform.experiment.Experiment.with_early_stopped_data`). Default
            ``"predicted"``: chosen on tuning seeds 100-104 of ``benchmarks/early_stopping.py
            --generator noisy_ei`` (both workloads); excluding them, ``noisy_ei`` never
            left its Sobol design in 19 of the 20 runs on seeds 0-9.
    """

    n_initial: int | None = Field(default=None, ge=1, le=10_000)
    warm_start: bool = True
    centre_first: bool | None = None
    early_stopped: EarlyStoppedData = "predicted"


@dataclass
class GenerationContext:
    """One ask of a :class:`ModelBasedGenerator` in progress: what its steps share.

    Args:
        experiment: The experiment snapshot being asked.
        n: Arms requested.
        seed: The ask's seed.
        state: The generator state being built (persisted after the ask).
        avoid: Signatures no new arm may have; every step adds what it proposes.
        info: Timings and decisions of the ask (stored with the trial's metadata).
        started: ``time.perf_counter()`` at the start of the ask.
        data: Training data per modelled metric (set by :meth:`ModelBasedGenerator.load_data`).
        outcome_constraints: The outcome constraints in the units of ``data`` (``None``: the
            config's, as written).
        pending: Assignments to fantasize as pending (``X_pending``) when proposing: every
            pending arm, the assignments carried into the ask and this ask's Sobol points;
            :meth:`ModelBasedGenerator.propose` appends what it proposes.
    """

    experiment: Experiment
    n: int
    seed: int
    state: dict[str, Any]
    avoid: set[tuple]
    info: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    data: dict[str, MetricData] = field(default_factory=dict)
    outcome_constraints: list[OutcomeConstraint] | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


class ModelBasedGenerator(Generator):
    """Quasi-random initial design, then proposals from GP models of the outcomes.

    One ask (:meth:`generate`):

    1. :meth:`load_data` collects the training data of the modelled metrics.
    2. **Initial design.** While fewer than :meth:`n_initial` arms count toward it, or while
       the objective has no observation at all, points come from the experiment's scrambled
       Sobol sequence. The rule, the same for every model-based generator: an arm counts when
       it has observed data (an arm of a completed trial with at least one observation, i.e.
       the data the model would be fitted to) or when it is pending (its trial is a candidate
       or running), **whatever produced it**: Sobol, a model, or a manual, attached or
       imported trial. So 300 attached completed trials make the next ask model-based, and
       concurrent asks do not over-sample the initial design, because each sees the others'
       pending arms. Failed, abandoned and early-stopped arms, and completed arms without
       data, do not count; neither do the ``pending`` assignments carried into a batch (they
       are arms the experiment already has). With ``n`` larger than what is left of the
       initial design, the rest of the batch is model-based. With ``centre_first`` (see
       :meth:`initial_centre`) the experiment's very first arm is the centre of the space.
    3. **Fit** one GP per modelled metric with data
       (:func:`~assay.platform.models.fit_outcome_models`, warm-started from the stored
       hyperparameters with ``warm_start``). If every fit attempt fails
       (:class:`~assay.platform.errors.ModelFitError`), the rest of the batch is Sobol and
       ``info["fallback"]`` says why.
    4. :meth:`propose` optimizes the acquisition function with every pending arm, every
       carried assignment and this ask's Sobol points fantasized as pending. A numerical
       failure there (:func:`is_numerical_failure`) keeps what was proposed and fills the rest
       with Sobol points (:func:`acquisition_fallback`); any other error propagates.
    5. Proposals dropped as duplicates of existing arms are replaced by Sobol points
       (``info["deduplicated"]``).

    Subclasses set ``name`` and ``Settings`` (a :class:`ModelBasedSettings`) and implement
    :meth:`propose`, and :meth:`load_data` when they model other data than the raw
    observations of every modelled metric.
    """

    Settings: ClassVar[type[GeneratorSettings]] = ModelBasedSettings
    #: Whether the centre opens the initial design when the ``centre_first`` setting is unset.
    centre_first_default: ClassVar[bool] = False

    def n_initial(self, space: SearchSpace, experiment: Experiment | None = None) -> int:
        """Size of the initial design: the setting, else ``max(2 d + 1, 5)`` — except that in
        an experiment run in batch trials the first batch is the initial design (its new
        arms, the control excluded, at most the default)."""
        if self.settings.n_initial:
            return self.settings.n_initial
        default = max(2 * space.compact_dim + 1, 5)
        if experiment is not None:
            first_batch = next((t for t in experiment.trials if len(t.arms) > 1), None)
            if first_batch is not None:
                controls = control_arm_names(experiment)
                new_arms = sum(1 for a in first_batch.arms if a.name not in controls)
                return min(default, max(new_arms, 1))
        return default

    def initial_centre(self, ctx: GenerationContext) -> list[Candidate]:
        """``[centre]`` when this ask opens the experiment's initial design and
        ``centre_first`` (else the generator's :attr:`centre_first_default`) is on: no trial
        exists yet and the centre is a new feasible arm (:func:`centre_candidate`); otherwise ``[]``. The centre counts toward
        the initial design like any other arm."""
        enabled = self.settings.centre_first
        if enabled is None:
            enabled = self.centre_first_default
        experiment = ctx.experiment
        if not enabled or experiment.trials or "centre_proposed" in ctx.state:
            return []
        centre = centre_candidate(experiment.search_space, ctx.avoid)
        if centre is None:
            return []
        ctx.avoid.add(SearchSpace.signature(centre.parameters))
        ctx.state["centre_proposed"] = True
        return [centre]

    def n_initial_left(self, ctx: GenerationContext) -> int:
        """Points of this ask that come from the initial design (see the class docstring)."""
        experiment = ctx.experiment
        if experiment.config.objective.name not in ctx.data:
            return ctx.n
        left = self.n_initial(experiment.search_space, experiment) - initial_design_arms(experiment)
        return min(ctx.n, max(0, left))

    def load_data(self, ctx: GenerationContext) -> None:
        """Set ``ctx.data``: by default the observations of every modelled metric."""
        ctx.data = training_data(ctx.experiment)

    @abstractmethod
    def propose(self, ctx: GenerationContext, fitted: FittedModel, n: int) -> Iterator[Candidate]:
        """Yield up to ``n`` model-based candidates, fantasizing ``ctx.pending``.

        Fewer is fine (a proposal that duplicates an existing arm is dropped; the base tops
        up with Sobol points). Each proposal's signature goes into ``ctx.avoid``. What was
        yielded before a numerical failure is kept.

        Args:
            ctx: The ask in progress.
            fitted: The GP models of ``ctx.data``.
            n: Points wanted.
        """

    def on_acquisition_failure(self, ctx: GenerationContext, proposed: list[Candidate]) -> None:
        """Called before the Sobol fallback replaces a failed acquisition optimization;
        ``proposed`` holds what :meth:`propose` had produced."""

    @with_generator_threads
    def generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> GenerationResult:
        with exact_solves():
            return self._generate(experiment, n, seed=seed, pending=pending)

    def _generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]],
    ) -> GenerationResult:
        started = time.perf_counter()
        self.validate_experiment(experiment.config)
        ctx = GenerationContext(
            experiment, n, seed, state=dict(experiment.generator_state),
            avoid=existing_signatures(experiment, pending), info={"generator": self.name},
            started=started,
        )  # fmt: skip
        self.load_data(ctx)
        state, avoid, info = ctx.state, ctx.avoid, ctx.info
        n_initial = self.n_initial_left(ctx)
        candidates = self.initial_centre(ctx) if n_initial else []
        candidates += next_sobol(experiment, n_initial - len(candidates), state=state, avoid=avoid)
        n_model = n - len(candidates)
        if not n_model:
            return GenerationResult(candidates, state, {}, info)
        metrics = [m for m in experiment.config.modelled_metrics if m in ctx.data]
        try:
            fitted = fit_outcome_models(
                ctx.data,
                metrics,
                warm_start=experiment.model_state if self.settings.warm_start else None,
                seed=seed,
            )
        except ModelFitError as e:
            info["fallback"] = f"sobol: {e.message}"
            sob = next_sobol(experiment, n_model, state=state, avoid=avoid)
            return GenerationResult(candidates + sob, state, {}, info)
        info["fit_seconds"] = round(fitted.fit_seconds, 4)
        if fitted.warnings:
            info["fit_warnings"] = fitted.warnings
        ctx.pending = [a.parameters for a in experiment.pending_arms()] + [dict(p) for p in pending]
        ctx.pending += [c.parameters for c in candidates]
        proposed: list[Candidate] = []
        try:
            for candidate in self.propose(ctx, fitted, n_model):
                proposed.append(candidate)  # one by one: kept if a later step fails
        except Exception as e:  # numerical failures fall back; anything else is a bug
            if not is_numerical_failure(e):
                raise
            self.on_acquisition_failure(ctx, proposed)
            proposed += acquisition_fallback(
                e, experiment, n_model - len(proposed), state=state, avoid=avoid, info=info,
                generator=self.name,
            )  # fmt: skip
        missing = n_model - len(proposed)
        if missing:
            info["deduplicated"] = missing
            proposed += next_sobol(experiment, missing, state=state, avoid=avoid)
        return GenerationResult(candidates + proposed, state, fitted.state, info)
