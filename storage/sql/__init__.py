"""SQL store (SQLAlchemy 2): SQLite by default, PostgreSQL (psycopg 3) for several servers.

One module per concern (the table in :mod:`.store` says which owns what);
``from assay.storage.sql import SqlStore`` is the way in. Transactions and concurrency:

* Every method runs one transaction through :meth:`SqlStore.run_transaction`
  (:mod:`.session`), which retries transient failures (PostgreSQL serialization failures and
  deadlocks, SQLite "database is locked") a bounded number of times with jittered back-off,
  and maps the rest to typed errors.
* State changes are compare-and-set: ``UPDATE trials SET state = :new WHERE id = :id AND
  state = :old``; a concurrent change makes the update miss and the caller gets
  ``InvalidTransitionError`` with nothing written.
* Asks are serialised per experiment (:mod:`.locking`). PostgreSQL: ``SELECT ... FOR NO KEY
  UPDATE`` on the experiment row for the whole ask (any number of servers; tells, whose
  inserts check the foreign key to that row, are not blocked — see
  :func:`.codec.experiment_row`). SQLite: an inter-process ``flock`` per experiment held for
  the ask, and the trials are written in a short ``BEGIN IMMEDIATE`` transaction with a busy
  timeout — so model fitting never holds SQLite's single write lock and tells keep flowing
  meanwhile. Trial numbers also carry a unique constraint.
* SQLite runs in WAL mode (readers never block the writer), ``busy_timeout`` 30 s, foreign keys
  on (:mod:`.engine`).

May import: :mod:`assay.platform`, the rest of :mod:`assay.storage`, sqlalchemy and alembic —
never :mod:`assay.service`, :mod:`assay.generative` or :mod:`assay.dashboards`.
"""

from assay.storage.sql.engine import make_engine
from assay.storage.sql.ledger import SqlPrivacyLedger
from assay.storage.sql.session import SqlDatabase
from assay.storage.sql.store import SqlStore

__all__ = ["SqlDatabase", "SqlPrivacyLedger", "SqlStore", "make_engine"]
