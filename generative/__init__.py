"""Workloads Assay tunes and dispatches as jobs: flow matching and the methods built on it.

Each module exposes a job entry point ``run(params: dict) -> dict`` (documented parameters
with defaults, validated by name and type), a ``SEARCH_SPACE`` constant in the JSON form
``assay.Client().create_experiment(parameters=...)`` accepts, seeds, CUDA when available, and
periodic ``assay.report(step=...)`` progress:

* :mod:`assay.generative.flow_matching` — CondOT flow matching, MLP / U-Net velocity fields,
  Euler / midpoint / torchdiffeq ODE sampling, Euler–Maruyama (``flow_matching:run`` trains
  a base model);
* :mod:`assay.generative.adjoint_matching` — reward fine-tuning with the memoryless schedule
  and the lean adjoint (Domingo-Enrich et al., ICLR 2025);
* :mod:`assay.generative.dflow` — controlled generation by source-point optimisation through
  the flow (Ben-Hamu et al., ICML 2024);
* :mod:`assay.generative.gsbm` — generalized Schrödinger bridge matching with spline Gaussian
  paths on Stunnel / Vneck (Liu et al., ICLR 2024);
* :mod:`assay.generative.cm3leon` — a retrieval-augmented decoder-only model over caption and
  image tokens with CFG and TopK contrastive decoding (CM3Leon, Yu et al. 2023); its job entry
  point is :mod:`assay.generative.workloads.cm3leon` (``workloads.cm3leon:run``).

Support modules: :mod:`~assay.generative.data` (2-D toys with exact densities, digits),
:mod:`~assay.generative.metrics`, :mod:`~assay.generative.rewards`,
:mod:`~assay.generative.jobs`. Everything here imports only torch, numpy, scipy,
scikit-learn and torchdiffeq (the ``generative`` extra) besides ``assay`` itself.
"""
