"""Projects and API keys in SQL: the part of :class:`~assay.storage.sql.SqlStore` that owns
the ``projects`` and ``api_keys`` tables.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.base`,
:mod:`assay.storage.orm` and :mod:`.session`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.platform.errors import ConflictError, NotFoundError
from assay.platform.experiment import utcnow
from assay.storage.base import ApiKeyInfo, ProjectSummary
from assay.storage.orm import ApiKeyRow, DashboardSessionRow, ExperimentRow, ProjectRow
from assay.storage.sql.session import SqlDatabase


def _key_info(row: ApiKeyRow, project: str) -> ApiKeyInfo:
    return ApiKeyInfo(
        row.id, project, row.name, row.prefix, row.role, row.created_at, row.revoked_at
    )


_KEY_COLUMNS = (ApiKeyRow, ProjectRow.name)


def project_id(s: Session, name: str) -> int:
    """The id of project ``name``, created (in this transaction) if it does not exist."""
    pid = s.scalar(select(ProjectRow.id).where(ProjectRow.name == name))
    if pid is None:
        row = ProjectRow(name=name, created_at=utcnow())
        s.add(row)
        s.flush()
        pid = row.id
    return pid


class SqlProjects(SqlDatabase):
    """Projects and hashed API keys (see :class:`~assay.storage.base.Store`)."""

    def ensure_project(self, name: str) -> None:
        self.run_transaction(lambda s: project_id(s, name))

    def list_projects(self) -> list[str]:
        return self.run_transaction(
            lambda s: list(s.scalars(select(ProjectRow.name).order_by(ProjectRow.name))),
            write=False,
        )

    def create_project(self, name: str) -> ProjectSummary:
        def fn(s: Session) -> ProjectSummary:
            if s.scalar(select(ProjectRow.id).where(ProjectRow.name == name)) is not None:
                raise ConflictError(f"project {name!r} already exists", field="name")
            row = ProjectRow(name=name, created_at=utcnow())
            s.add(row)
            s.flush()
            return ProjectSummary(row.name, row.created_at, 0)

        def clash(e: IntegrityError) -> ConflictError:  # created concurrently
            return ConflictError(f"project {name!r} already exists", field="name")

        return self.run_transaction(fn, unique_clash=clash)

    def project_summaries(self, *, name: str | None = None) -> list[ProjectSummary]:
        stmt = (
            select(ProjectRow.name, ProjectRow.created_at, func.count(ExperimentRow.id))
            .outerjoin(ExperimentRow, ExperimentRow.project_id == ProjectRow.id)
            .group_by(ProjectRow.id, ProjectRow.name, ProjectRow.created_at)
            .order_by(ProjectRow.name)
        )
        if name is not None:
            stmt = stmt.where(ProjectRow.name == name)
        return self.run_transaction(
            lambda s: [ProjectSummary(n, at, int(c)) for n, at, c in s.execute(stmt)],
            write=False,
        )

    def add_api_key(
        self, project: str, key_hash: str, *, name: str, prefix: str, role: str = "member"
    ) -> ApiKeyInfo:
        def fn(s: Session) -> ApiKeyInfo:
            row = ApiKeyRow(
                project_id=project_id(s, project), name=name, prefix=prefix, role=role,
                key_hash=key_hash, created_at=utcnow(), revoked_at=None,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _key_info(row, project)

        return self.run_transaction(fn)

    def key_for_hash(self, key_hash: str) -> ApiKeyInfo | None:
        def fn(s: Session) -> ApiKeyInfo | None:
            found = s.execute(
                select(*_KEY_COLUMNS)
                .join(ProjectRow, ApiKeyRow.project_id == ProjectRow.id)
                .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
            ).one_or_none()
            return None if found is None else _key_info(found[0], found[1])

        return self.run_transaction(fn, write=False)

    def list_api_keys(self, *, project: str | None = None) -> list[ApiKeyInfo]:
        stmt = (
            select(*_KEY_COLUMNS)
            .join(ProjectRow, ApiKeyRow.project_id == ProjectRow.id)
            .order_by(ApiKeyRow.id)
        )
        if project is not None:
            stmt = stmt.where(ProjectRow.name == project)
        return self.run_transaction(
            lambda s: [_key_info(r, p) for r, p in s.execute(stmt)], write=False
        )

    def revoke_api_key(self, key_id: int, *, project: str | None = None) -> ApiKeyInfo:
        def fn(s: Session) -> ApiKeyInfo:
            stmt = (
                select(*_KEY_COLUMNS)
                .join(ProjectRow, ApiKeyRow.project_id == ProjectRow.id)
                .where(ApiKeyRow.id == key_id)
            )
            if project is not None:
                stmt = stmt.where(ProjectRow.name == project)
            found = s.execute(stmt).one_or_none()
            if found is None:
                raise NotFoundError(f"API key {key_id} not found", details={"key_id": key_id})
            row, name = found
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.flush()
            return _key_info(row, name)

        return self.run_transaction(fn)

    def create_session(self, session_hash: str, key_id: int, *, expires_at: datetime) -> None:
        def fn(s: Session) -> None:
            s.add(
                DashboardSessionRow(
                    session_hash=session_hash, key_id=key_id, created_at=utcnow(),
                    expires_at=expires_at, ended_at=None,
                )
            )  # fmt: skip

        self.run_transaction(fn)

    def session_key(self, session_hash: str, *, now: datetime) -> ApiKeyInfo | None:
        def fn(s: Session) -> ApiKeyInfo | None:
            found = s.execute(
                select(*_KEY_COLUMNS)
                .join(ProjectRow, ApiKeyRow.project_id == ProjectRow.id)
                .join(DashboardSessionRow, DashboardSessionRow.key_id == ApiKeyRow.id)
                .where(
                    DashboardSessionRow.session_hash == session_hash,
                    DashboardSessionRow.ended_at.is_(None),
                    DashboardSessionRow.expires_at > now,
                    ApiKeyRow.revoked_at.is_(None),
                )
            ).one_or_none()
            return None if found is None else _key_info(found[0], found[1])

        return self.run_transaction(fn, write=False)

    def end_session(self, session_hash: str, *, now: datetime) -> None:
        self.run_transaction(
            lambda s: s.execute(
                update(DashboardSessionRow)
                .where(
                    DashboardSessionRow.session_hash == session_hash,
                    DashboardSessionRow.ended_at.is_(None),
                )
                .values(ended_at=now)
            )
        )


__all__ = ["SqlProjects", "project_id"]
