"""Projects and API keys in SQL: the part of :class:`~assay.storage.sql.SqlStore` that owns
the ``projects`` and ``api_keys`` tables.

May import: sqlalchemy, :mod:`assay.platform`, :mod:`assay.storage.base`,
:mod:`assay.storage.orm` and :mod:`.session`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assay.platform.errors import ConflictError
from assay.platform.experiment import utcnow
from assay.storage.base import ProjectSummary
from assay.storage.orm import ApiKeyRow, ExperimentRow, ProjectRow
from assay.storage.sql.session import SqlDatabase


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

    def add_api_key(self, project: str, key_hash: str, *, name: str, prefix: str) -> None:
        def fn(s: Session) -> None:
            s.add(
                ApiKeyRow(
                    project_id=project_id(s, project), name=name, prefix=prefix,
                    key_hash=key_hash, created_at=utcnow(), revoked_at=None,
                )
            )  # fmt: skip

        self.run_transaction(fn)

    def project_for_key(self, key_hash: str) -> str | None:
        return self.run_transaction(
            lambda s: s.scalar(
                select(ProjectRow.name)
                .join(ApiKeyRow, ApiKeyRow.project_id == ProjectRow.id)
                .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
            ),
            write=False,
        )


__all__ = ["SqlProjects", "project_id"]
