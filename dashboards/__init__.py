"""The web dashboard: server-rendered pages (Jinja2) with Plotly.js charts, served by the
service's FastAPI app at ``/`` (the REST API stays at ``/api/v1``).

Pages read through the storage interface and :mod:`assay.platform.diagnostics`; nothing here
writes to the database. Plotly.js is vendored (``static/vendor``), so the dashboard works
without internet access. :func:`assay.dashboards.routes.mount_dashboard` adds the pages to an
app; the service's ``create_app`` calls it.

Example:
    >>> from assay.service.app import create_app
    >>> app = create_app()               # doctest: +SKIP  (mounts the dashboard)
"""
