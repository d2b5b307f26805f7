"""Differentially private synthetic tables with a small language model.

Sablayrolles, Wang & Karrer (2023), "Privately generating tabular data using language
models" (arXiv 2306.04803): rows become token sentences (:mod:`.schema`), a small GPT is
trained from scratch with DP-SGD through Opacus (:mod:`.model`, :mod:`.train`), sampled back
under constraints, and compared with a marginal-based DP baseline (:mod:`.baseline`) on
held-out likelihood, k-way marginals and train-on-synthetic/test-on-real accuracy
(:mod:`.metrics`). Releases (:mod:`.release`) are charged to a per-dataset privacy budget (a
ledger the caller passes in, see :mod:`assay.storage.ledger`) and come with a reconstruction-risk report (:mod:`assay.generative.privacy`);
tables are read and written as CSV/Parquet files by :mod:`.io`. The job that tunes the DP-SGD
hyperparameters is the workload :mod:`assay.generative.workloads.dp_tabular`.

Heavy modules (torch, opacus) load on first use of the submodules, not on import of this one.
"""
