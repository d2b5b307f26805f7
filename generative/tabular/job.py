"""Old home of the DP tabular tuning job, now :mod:`assay.generative.workloads.dp_tabular`.

Job specs, stored experiments and code name ``assay.generative.tabular.job:run`` and import
``DEFAULTS``, ``OBJECTIVE`` and ``SEARCH_SPACE`` from here; both keep working: :func:`run` is an
alias of the workload's entry point and the constants are answered from the workload module
(resolved by name, see :mod:`assay.generative.legacy`). New code uses
``assay.generative.workloads.dp_tabular:run``.
"""

from __future__ import annotations

from assay.generative.legacy import entry_point, forward

#: The old job entry point ``assay.generative.tabular.job:run``, an alias of the workload's.
run = entry_point(__name__, "dp_tabular")
__getattr__ = forward(__name__, dp_tabular=("DEFAULTS", "OBJECTIVE", "SEARCH_SPACE"))
