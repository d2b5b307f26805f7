"""The generation helpers: the one retry wrapper of locked asks, and per-ask seeds.

(The retries against real database failures are in ``tests/storage/test_ask_retry.py``.)
"""

from __future__ import annotations

import pytest

from assay.platform.errors import StorageBusyError
from assay.service.engine import Engine
from assay.service.generation import ASK_ATTEMPTS, derive_seed, run_locked
from assay.storage.factory import open_store

SPEC = {
    "name": "g",
    "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
    "objective": "y",
    "generator": "sobol",
}


def test_run_locked_retries_then_gives_up_with_the_typed_error() -> None:
    store = open_store("memory://")
    exp = Engine(store).create_experiment(SPEC)
    calls = []

    def flaky(lock):
        calls.append(lock.experiment.id)
        if len(calls) < 3:
            raise StorageBusyError("busy for a moment")
        return "done"

    assert run_locked(store, exp.id, flaky, verb="test") == "done" and len(calls) == 3
    calls.clear()

    def busy(lock):
        calls.append(lock.experiment.id)
        raise StorageBusyError("still busy")

    with pytest.raises(StorageBusyError, match="still busy"):
        run_locked(store, exp.id, busy, verb="test")
    assert calls == [exp.id] * ASK_ATTEMPTS


def test_seeds_differ_per_ask_and_repeat_for_the_same_data() -> None:
    assert derive_seed(1, 0) == derive_seed(1, 0)
    assert len({derive_seed(1, k) for k in range(100)}) == 100
    assert all(0 <= derive_seed(2**40, k) < 2**31 - 1 for k in range(10))
