"""The DP tabular tests train small torch models: one thread each (two cores, shared)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield
