"""Quasi-random design: a scrambled Sobol sequence (Owen scrambling), seeded.

Successive asks continue one sequence (its position is kept in the generator state), which
fills the space far more evenly than independent uniform draws. Linear parameter constraints
are handled by rejection; discrete parameters map uniform coordinates to equally likely values.

Owns: :class:`SobolGenerator`. The sequence itself is
:meth:`assay.platform.space.SearchSpace.sobol`; continuing it from the generator state is
:func:`assay.platform.generators.base.next_sobol`, which the model-based generators share.

May import: :mod:`assay.platform.experiment` and :mod:`assay.platform.generators.base`.
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
    next_sobol,
)


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
        avoid = existing_signatures(experiment, pending)
        candidates = next_sobol(experiment, n, state=state, avoid=avoid)
        return GenerationResult(candidates, state, info={"generator": "sobol"})
