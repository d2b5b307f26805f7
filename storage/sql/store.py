"""The SQL store: :class:`SqlStore`, the one class users see, composed of one part per concern.

=======================  ======================================================
part                     owns
=======================  ======================================================
:mod:`.experiments`      experiments and the per-experiment ask lock
:mod:`.trials`           trials, observations, the audit trail of events
:mod:`.projects`         projects and API keys
:mod:`.jobs`             run control, jobs, trial reports, claiming trials
:mod:`.session`          sessions, the transaction runner, driver errors → typed errors
:mod:`.engine`           the engine's settings, schema check/upgrade on open
:mod:`.ledger`           the privacy ledger (``store.privacy_ledger(project)``)
=======================  ======================================================

Every method is one transaction through :meth:`SqlStore.run_transaction`; state changes are
compare-and-set; asks are serialised per experiment (see :mod:`.locking`).

May import: the sibling modules, :mod:`assay.storage.base`, :mod:`assay.storage.migrate`,
:mod:`assay.storage.ledger` and :mod:`assay.platform`.
"""

from __future__ import annotations

from assay.storage.base import Store
from assay.storage.ledger import PrivacyLedger
from assay.storage.migrate import current_revision
from assay.storage.sql.engine import make_engine, open_schema
from assay.storage.sql.experiments import SqlExperiments
from assay.storage.sql.jobs import SqlJobs
from assay.storage.sql.projects import SqlProjects
from assay.storage.sql.trials import SqlTrials
from assay.storage.webhooks import WebhookOutbox


class SqlStore(SqlExperiments, SqlTrials, SqlProjects, SqlJobs, Store):
    """The SQL backend: SQLite by default, PostgreSQL (psycopg 3) for several servers.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///./assay.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        migrate: Bring the schema up to date on open (embedded use). When ``False`` the store
            refuses an out-of-date schema with :class:`SchemaOutOfDateError` naming
            ``assay db upgrade`` (server use).
        pool_size: Connections kept open (PostgreSQL).

    Example:
        >>> store = SqlStore("sqlite://")
        >>> store.create_project("growth").name
        'growth'
        >>> store.run_transaction(lambda session: 1 + 1, write=False)
        2
    """

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10) -> None:
        self.url = url
        engine = make_engine(url, pool_size=pool_size)
        open_schema(engine, migrate=migrate)
        super().__init__(engine)

    def privacy_ledger(self, project: str = "default") -> PrivacyLedger:
        """The project's budgets in this database (:mod:`assay.storage.sql.ledger`)."""
        from assay.storage.sql.ledger import SqlPrivacyLedger

        return SqlPrivacyLedger(self, project)

    def webhooks(self) -> WebhookOutbox:
        """Subscriptions and the delivery outbox in this database."""
        from assay.storage.sql.webhooks import SqlOutbox

        return SqlOutbox(self)

    @property
    def schema_revision(self) -> str | None:
        return current_revision(self.engine)


__all__ = ["SqlStore"]
