"""Fixtures for the generative workload tests: small base models trained once per session.

Torch is pinned to one thread: on the shared 2-core machine two threads per process make small
MLP steps an order of magnitude slower.
"""

from __future__ import annotations

import pytest
import torch

#: Settings of the cached test models (tests that go through ``run(params)`` pass the same
#: numbers so the per-process memo in ``assay.generative.workloads.pretrained`` hits instead of retraining).
TOY_BASE = {"iterations": 1000, "batch_size": 256}
DIGITS_BASE = {"iterations": 400, "channels": 16}


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_base():
    """Flow-matching MLP on 8 Gaussians (radius 2, std 0.2)."""
    from assay.generative.workloads.pretrained import toy_base_model

    return toy_base_model("8gaussians", **TOY_BASE)


@pytest.fixture(scope="session")
def digits_base():
    """Small flow-matching U-Net on the digits train split (400 steps: blurry but digit-like)."""
    from assay.generative.workloads.pretrained import digits_base_model

    return digits_base_model(**DIGITS_BASE)
