"""``run_locally`` refuses experiments it could never finish (its end-to-end use is covered by
tests/examples, which run real jobs through it)."""

from __future__ import annotations

import pytest

from assay.service.jobs.local_run import run_locally

SPACE = [{"name": "x", "type": "float", "bounds": [0.0, 1.0]}]


def test_needs_a_job_spec_and_a_budget() -> None:
    with pytest.raises(ValueError, match="job"):
        run_locally({"name": "e", "parameters": SPACE, "objective": "y"})
    with pytest.raises(ValueError, match="budget"):
        run_locally(
            {"name": "e", "parameters": SPACE, "objective": "y", "job": {"entrypoint": "m:f"}}
        )
