"""The service layer: the experiment engine, the REST API (FastAPI), jobs and their executors,
the Python client and the ``assay`` CLI.

Where each concept lives: ``engine`` (the verbs, a thin façade) over ``generation`` (creating
trials under the experiment lock) and ``runs`` (run control, jobs, reports); ``verbs`` (the
client-facing verbs as one Protocol); ``errors`` (typed errors ↔ HTTP); ``app`` and ``api/``
(REST); ``jobs/`` (orchestrator, executors); ``client`` and ``remote`` (the Python client, in
process or over HTTP); ``cli``.
"""
