"""Candidate generators and their registry.

``get_generator(name, settings)`` builds one by name; new generators register themselves with
:func:`register_generator`.

* :mod:`~assay.platform.generators.base` — the protocol and the shared flow of model-based
  generators (initial design, fit, fallbacks);
* :mod:`~assay.platform.generators.sobol` — ``"sobol"``, the quasi-random design;
* :mod:`~assay.platform.generators.noisy_ei` — ``"noisy_ei"``, noisy-constrained EI
  (Letham et al. 2019);
* :mod:`~assay.platform.generators.ehvi` — ``"noisy_ehvi"`` (noisy-constrained expected
  hypervolume improvement, Daulton et al. 2021; the default with several objectives) and
  ``"parego"`` (random Chebyshev scalarizations), for several objectives;
* :mod:`~assay.platform.generators.multi_step` — ``"multi_step"``, multi-step lookahead EI
  (Jiang et al. 2020), a package;
* :mod:`~assay.platform.generators.knowledge_gradient` — ``"knowledge_gradient"``, one-shot
  knowledge gradient valuing the model's recommendation (Balandat et al. 2020).

May import: what its modules may: torch, gpytorch, botorch, pydantic and :mod:`assay.platform`;
nothing of ``assay`` above :mod:`assay.platform`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assay.platform.errors import ValidationError
from assay.platform.generators.base import Candidate, GenerationResult, Generator
from assay.platform.generators.ehvi import NoisyEHVIGenerator, ParEGOGenerator
from assay.platform.generators.knowledge_gradient import KnowledgeGradientGenerator
from assay.platform.generators.multi_step import MultiStepGenerator
from assay.platform.generators.noisy_ei import NoisyEIGenerator
from assay.platform.generators.sobol import SobolGenerator

GENERATORS: dict[str, type[Generator]] = {}


def register_generator(cls: type[Generator]) -> type[Generator]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator)."""
    GENERATORS[cls.name] = cls
    return cls


def get_generator(name: str, settings: Mapping[str, Any] | None = None) -> Generator:
    """Instantiate the generator called ``name`` with validated ``settings``."""
    cls = GENERATORS.get(name)
    if cls is None:
        raise ValidationError(
            f"unknown generator {name!r}; available: {sorted(GENERATORS)}", field="generator"
        )
    return cls(settings)


register_generator(SobolGenerator)
register_generator(NoisyEIGenerator)
register_generator(MultiStepGenerator)
register_generator(KnowledgeGradientGenerator)
register_generator(NoisyEHVIGenerator)
register_generator(ParEGOGenerator)

__all__ = [
    "GENERATORS",
    "Candidate",
    "GenerationResult",
    "Generator",
    "KnowledgeGradientGenerator",
    "MultiStepGenerator",
    "NoisyEHVIGenerator",
    "NoisyEIGenerator",
    "ParEGOGenerator",
    "SobolGenerator",
    "get_generator",
    "register_generator",
]
