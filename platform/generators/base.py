"""The generator protocol: turn an experiment snapshot into new candidate arms.

A generator is stateless between calls except for the JSON ``generator_state`` and
``model_state`` it returns, which storage persists with the experiment and hands back on the
next ask (stateless generation: any server process can serve the next ask).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic

from assay.platform.errors import AssayError, GenerationError, ValidationError
from assay.platform.experiment import Experiment, TrialState
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


def existing_signatures(experiment: Experiment) -> set[tuple]:
    """Signatures of arms already in the experiment (except failed-before-running ones) and
    of the control arm (``status_quo``), which is never proposed as a new arm."""
    out = {
        SearchSpace.signature(a.parameters)
        for t in experiment.trials
        if t.state is not TrialState.ABANDONED
        for a in t.arms
    }
    if experiment.config.status_quo is not None:
        out.add(SearchSpace.signature(experiment.config.status_quo))
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
    sob, state["sobol_consumed"] = sobol_candidates(
        experiment.search_space, n, seed=experiment.config.seed or 0,
        consumed=int(state.get("sobol_consumed", 0)), avoid=avoid,
    )  # fmt: skip
    for c in sob:
        c.metadata["fallback"] = f"acquisition failed: {reason}"
        avoid.add(SearchSpace.signature(c.parameters))
    return sob
