from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from assay.platform.experiment import (
    Arm,
    Experiment,
    ExperimentConfig,
    Observation,
    Trial,
    TrialState,
)


def _build(
    spec: Mapping[str, Any],
    observed: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]] = (),
    pending: Sequence[Mapping[str, Any]] = (),
    generator: str = "sobol",
) -> Experiment:
    """An experiment snapshot with completed trials ``(params, {metric: value})`` and pending
    ones, built directly from domain objects (no store)."""
    config = ExperimentConfig.from_dict({"seed": 0, **spec})
    exp = Experiment(id=1, config=config)
    for i, (params, values) in enumerate(observed):
        arm = Arm(f"{i}_0", config.search_space.validate(params))
        obs = {m: Observation.parse(m, v) for m, v in values.items()}
        exp.trials.append(
            Trial(i + 1, 1, i, [arm], TrialState.COMPLETED, generator, {arm.name: obs})
        )
    for params in pending:
        i = len(exp.trials)
        arm = Arm(f"{i}_0", config.search_space.validate(params))
        exp.trials.append(Trial(i + 1, 1, i, [arm], TrialState.RUNNING, "noisy_ei"))
    return exp


@pytest.fixture
def build_experiment() -> Callable[..., Experiment]:
    return _build
