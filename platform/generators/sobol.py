"""Quasi-random design: a scrambled Sobol sequence (Owen scrambling), seeded.

Successive asks continue one sequence (its position is kept in the generator state), which
fills the space far more evenly than independent uniform draws. Linear parameter constraints
are handled by rejection; discrete parameters map uniform coordinates to equally likely values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from assay.platform.experiment import Experiment
from assay.platform.generators.base import (
    GenerationResult,
    Generator,
    GeneratorSettings,
    existing_signatures,
    sobol_candidates,
)
from assay.platform.space import SearchSpace


class SobolSettings(GeneratorSettings):
    pass


class SobolGenerator(Generator):
    """Scrambled Sobol points, deduplicated against existing arms.

    Example:
        >>> gen = SobolGenerator()
        >>> result = gen.generate(experiment, n=4, seed=0)  # doctest: +SKIP
    """

    name: ClassVar[str] = "sobol"
    Settings = SobolSettings

    def generate(
        self,
        experiment: Experiment,
        n: int,
        *,
        seed: int,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> GenerationResult:
        state = dict(experiment.generator_state)
        base_seed = experiment.config.seed or 0
        candidates, consumed = sobol_candidates(
            experiment.search_space,
            n,
            seed=base_seed,
            consumed=int(state.get("sobol_consumed", 0)),
            avoid=existing_signatures(experiment) | {SearchSpace.signature(p) for p in pending},
        )
        state["sobol_consumed"] = consumed
        return GenerationResult(candidates, state, info={"generator": "sobol"})
