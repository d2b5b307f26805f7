"""Persistence: the store interface and its backends, migrations, and the privacy ledger.

========================  ============================================================
module                    owns
========================  ============================================================
:mod:`.base`              the :class:`~.base.Store` interface and its value types
:mod:`.memory`            the in-memory store (reference implementation)
:mod:`.sql`               the SQL store (SQLite, PostgreSQL), one module per concern
:mod:`.orm`               the SQLAlchemy tables
:mod:`.migrate`           Alembic upgrades and the schema check (``migrations/``)
:mod:`.factory`           ``open_store(url)``
:mod:`.urls`              database-URL rules (backend, normal form, SQLite paths)
:mod:`.ledger`            the privacy ledger's accounting rules and its file/memory backends
========================  ============================================================

May import: :mod:`assay.platform`, sqlalchemy and alembic — never :mod:`assay.service`,
:mod:`assay.generative` or :mod:`assay.dashboards`.
"""
