"""Shared fixtures. Tests mirror the source tree (tests/platform, tests/storage, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Two cores here: keep torch from oversubscribing when tests run model fits.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
