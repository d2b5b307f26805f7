"""Bodies of ``/keys``: create a key (the token is in the answer, once), a key, the list.

May import pydantic, :mod:`assay.storage.base` (the ``ApiKeyInfo`` row it converts) and the
engine's project-name rule; no FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from assay.service.engine import PROJECT_NAME_PATTERN
from assay.service.schemas.common import Strict
from assay.storage.base import ApiKeyInfo

RoleName = Literal["viewer", "member", "admin"]


class ApiKeyCreate(Strict):
    """A new key of the caller's project (an admin key) or of ``project`` (local mode)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "ci", "role": "member"}]}
    )

    name: Annotated[str, Field(min_length=1, max_length=200)] = "default"
    role: RoleName = "member"
    project: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=PROJECT_NAME_PATTERN)] | None
    ) = None


class ApiKeyPublic(BaseModel):
    id: int
    project: str
    name: str
    prefix: str
    role: RoleName
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_domain(cls, k: ApiKeyInfo) -> ApiKeyPublic:
        return cls(
            id=k.id, project=k.project, name=k.name, prefix=k.prefix, role=k.role,  # type: ignore[arg-type]
            created_at=k.created_at, revoked_at=k.revoked_at,
        )  # fmt: skip


class ApiKeyCreated(ApiKeyPublic):
    """The new key with its token: shown this once, only its hash is stored."""

    token: str


class ApiKeyList(BaseModel):
    keys: list[ApiKeyPublic]
