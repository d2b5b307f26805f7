"""Workloads Assay tunes and dispatches as jobs: flow matching and the methods built on it.

Algorithms (one module per method, each citing its paper):

* :mod:`assay.generative.flow_matching` — CondOT flow matching, MLP / U-Net velocity fields,
  Euler / midpoint / torchdiffeq ODE sampling, Euler–Maruyama;
* :mod:`assay.generative.adjoint_matching` — reward fine-tuning with the memoryless schedule
  and the lean adjoint (Domingo-Enrich et al., ICLR 2025);
* :mod:`assay.generative.dflow` — controlled generation by source-point optimisation through
  the flow (Ben-Hamu et al., ICML 2024);
* :mod:`assay.generative.gsbm` — generalized Schrödinger bridge matching with spline Gaussian
  paths on Stunnel / Vneck (Liu et al., ICLR 2024);
* :mod:`assay.generative.tabular` — DP synthetic tables with a small language model
  (Sablayrolles et al. 2023), with :mod:`assay.generative.privacy` accounting;
* :mod:`assay.generative.voicebox` — Voicebox-style speech infilling: masked-span flow
  matching over log-mel frames of espeak-ng speech, conditioned on aligned phonemes and the
  audio context, with classifier-free guidance (Le et al., 2023);
* :mod:`assay.generative.cm3leon` — a retrieval-augmented decoder-only model over caption and
  image tokens of the digits: dense retrieval with MMR, CM3 pre-training, multi-task SFT,
  classifier-free guidance and TopK contrastive decoding (CM3Leon, Yu et al., 2023).

Job workloads (:mod:`assay.generative.workloads`, one module per workload): each exposes the
job entry point ``run(params: dict) -> dict`` (documented parameters with defaults, validated
by name and type; seeds, CUDA when available, periodic ``assay.report(step=...)`` progress) and
a ``SEARCH_SPACE`` constant in the JSON form ``assay.Client().create_experiment(parameters=...)``
accepts, e.g. ``assay.generative.workloads.adjoint_matching:run``. The old entry points
(``assay.generative.adjoint_matching:run``, ...) remain aliases (:mod:`assay.generative.legacy`).

Support modules: :mod:`~assay.generative.data` (2-D toys with exact densities, digits),
:mod:`~assay.generative.metrics`, :mod:`~assay.generative.rewards`. Everything here imports only
torch, numpy, scipy, scikit-learn and torchdiffeq (the ``generative`` extra; pandas and opacus
for ``tabular``, the ``privacy`` extra; Debian's ``espeak-ng`` for the Voicebox corpus, ``make
espeak``) besides ``assay`` itself — never ``assay.service`` or
``assay.storage``. Workloads import algorithms, never the reverse.
"""
