"""``python -m assay.service.jobs.runner``: runs an entry-point job inside its process.

Reads ``ASSAY_ENTRYPOINT`` (``package.module:function``) and ``ASSAY_PARAMS`` (JSON), calls
``function(params)``, and writes ``{"status": "ok", "metrics": {...}}`` (or ``{"status":
"error", "error": "..."}``) to ``ASSAY_RESULT_PATH``. The function returns ``{metric: value}``
where a value is a number or ``(mean, sem)``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def load_entrypoint(entrypoint: str) -> Callable[[dict[str, Any]], Any]:
    module, _, name = entrypoint.partition(":")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise TypeError(f"{entrypoint} is not a callable")
    return fn


def _number(v: Any, what: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {x!r}")
    return x


def normalize_metrics(out: Any) -> dict[str, Any]:
    """``{metric: float | [mean, sem]}`` from what a job returned."""
    if not isinstance(out, Mapping) or not out:
        raise TypeError(f"the job must return a non-empty dict {{metric: value}}, got {out!r}")
    metrics: dict[str, Any] = {}
    for k, v in out.items():
        if isinstance(v, list | tuple):
            if len(v) not in (2, 3):
                raise TypeError(f"metric {k!r}: expected (mean, sem), got {v!r}")
            mean = _number(v[0], f"metric {k!r} mean")
            sem = None if v[1] is None else _number(v[1], f"metric {k!r} sem")
            metrics[str(k)] = [mean, sem]
        elif isinstance(v, Mapping):
            metrics[str(k)] = [
                _number(v["mean"], k),
                None if v.get("sem") is None else _number(v["sem"], k),
            ]
        else:
            metrics[str(k)] = _number(v, f"metric {k!r}")
    return metrics


def main() -> int:
    result_path = Path(os.environ["ASSAY_RESULT_PATH"])
    try:
        fn = load_entrypoint(os.environ["ASSAY_ENTRYPOINT"])
        params = json.loads(os.environ.get("ASSAY_PARAMS", "{}"))
        metrics = normalize_metrics(fn(params))
    except BaseException as e:  # report everything, including SystemExit from user code
        traceback.print_exc()
        sys.stderr.flush()
        lines = traceback.format_exception(e)
        result_path.write_text(
            json.dumps(
                {"status": "error", "error": f"{type(e).__name__}: {e}\n" + "".join(lines)[-3000:]}
            )
        )
        return 1
    result_path.write_text(json.dumps({"status": "ok", "metrics": metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
