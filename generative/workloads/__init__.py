"""Job entry points of the generative workloads: one module per workload, each exposing
``run(params: dict) -> dict`` (a documented parameter dataclass, a ``SEARCH_SPACE``, progress
through ``assay.report``); the algorithms they run live in :mod:`assay.generative`.

* :mod:`assay.generative.workloads.cm3leon` — retrieval-augmented text/image token model
  (CM3Leon, Yu et al. 2023) on the digits.
"""
