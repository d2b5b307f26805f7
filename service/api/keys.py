"""``/keys``: an admin key lists, creates and revokes the keys of its own project (in local
no-auth mode: of any project). The role check (``admin``) is :func:`assay.service.deps.role_needed`'s;
a revoked key, and every dashboard session opened with it, stops working on the next request
on every replica (nothing caches a valid key).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from assay.platform.errors import ForbiddenError, ValidationError
from assay.service.auth import Role, hash_token, new_token, token_prefix
from assay.service.deps import MAX_ID, EngineDep, PrincipalDep
from assay.service.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic

router = APIRouter(prefix="/keys", tags=["keys"])
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=ApiKeyList)
def list_keys(engine: EngineDep, who: PrincipalDep):
    """The project's keys, revoked ones included (never their tokens)."""
    keys = engine.store.list_api_keys(project=who.project)
    return ApiKeyList(keys=[ApiKeyPublic.from_domain(k) for k in keys])


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, engine: EngineDep, who: PrincipalDep):
    """A new key; the answer holds its token, shown this once."""
    project = body.project or who.project
    if project is None:
        raise ValidationError("name the key's project", field="project")
    if who.project is not None and project != who.project:
        raise ForbiddenError(
            f"an admin key of project {who.project!r} manages only that project's keys",
            details={"field": "project", "project": who.project},
        )
    token = new_token()
    key = engine.store.add_api_key(
        project, hash_token(token), name=body.name, prefix=token_prefix(token),
        role=Role(body.role).value,
    )  # fmt: skip
    return ApiKeyCreated(**ApiKeyPublic.from_domain(key).model_dump(), token=token)


@router.post("/{key_id}:revoke", response_model=ApiKeyPublic)
def revoke_key(key_id: KeyId, engine: EngineDep, who: PrincipalDep):
    """Revoke a key (idempotent): it and its dashboard sessions stop working at once."""
    return ApiKeyPublic.from_domain(engine.store.revoke_api_key(key_id, project=who.project))
