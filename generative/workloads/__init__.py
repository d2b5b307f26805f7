"""Job workloads: the entry points Assay dispatches as trial jobs, one module per workload.

Each workload module exposes ``run(params: dict) -> dict`` (the job entry point: documented
parameters with defaults, validated by name and type; seeds; CUDA when available; periodic
``assay.report(step=...)`` progress; finite float metrics) and a ``SEARCH_SPACE`` constant in
the JSON form ``assay.Client().create_experiment(parameters=...)`` accepts. The algorithms they
run live beside this package in :mod:`assay.generative`; a workload adds only the job around
one: its parameters, its task set-up and its metrics.

* :mod:`.flow_matching` — train a base flow
  (``assay.generative.workloads.flow_matching:run``);
* :mod:`.adjoint_matching` — reward fine-tuning
  (``assay.generative.workloads.adjoint_matching:run``);
* :mod:`.dflow` — controlled generation (``assay.generative.workloads.dflow:run``);
* :mod:`.gsbm` — generalized Schrödinger bridge matching
  (``assay.generative.workloads.gsbm:run``);
* :mod:`.dp_tabular` — the DP-SGD tabular LM at a fixed ε
  (``assay.generative.workloads.dp_tabular:run``);
* :mod:`.voicebox` — Voicebox-style speech infilling
  (``assay.generative.workloads.voicebox:run``; no old alias, it is new);
* :mod:`.cm3leon` — a retrieval-augmented decoder-only model over caption and image tokens of
  the digits (``assay.generative.workloads.cm3leon:run``; new, no old alias).

The old entry points (``assay.generative.<algorithm>:run``,
``assay.generative.tabular.job:run``) stay valid aliases (:mod:`assay.generative.legacy`).
Shared plumbing: :mod:`.common` (the :class:`~.common.WorkloadConfig` base with ``seed``,
``device``, ``cache_dir`` and ``report_every``; parameter checks; the start and end of a run)
and :mod:`.pretrained` (base flows and the digits classifier, trained once per process).

Dependencies run one way: workloads import the algorithm and support modules of
:mod:`assay.generative` (and ``assay.report``), never ``assay.service`` or ``assay.storage``;
no algorithm module imports a workload. Importing this package imports no workload.
"""

#: Every workload's canonical job entry point, by workload name.
ENTRYPOINTS: dict[str, str] = {
    name: f"assay.generative.workloads.{name}:run"
    for name in (
        "flow_matching",
        "adjoint_matching",
        "dflow",
        "gsbm",
        "dp_tabular",
        "voicebox",
        "cm3leon",
    )
}
