"""API keys: ``assay_<random>`` tokens, stored only as SHA-256 hashes, one project per key.

The tokens carry 256 bits of randomness, so a fast hash is safe (there is nothing to brute
force); lookups are cached briefly so authentication costs no database round trip per request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from assay.platform.errors import AuthenticationError
from assay.storage.base import Store

TOKEN_PREFIX = "assay_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_key(store: Store, project: str, name: str = "default") -> str:
    """Create a key for ``project`` (creating the project if needed); returns the token.

    The token is shown once; only its hash is stored.
    """
    token = new_token()
    store.add_api_key(project, hash_token(token), name=name, prefix=token[: len(TOKEN_PREFIX) + 4])
    return token


class Role(StrEnum):
    """What a key may do: ``viewer`` reads, ``member`` runs experiments, ``admin`` manages."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``project=None`` means every project (local no-auth mode);
    ``trial_scope`` is set for a job's scoped token (it may only report for that trial)."""

    project: str | None
    actor: str
    trial_scope: int | None = None
    role: Role = Role.MEMBER

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def write_project(self) -> str:
        return self.project or "default"


class KeyResolver:
    """Resolves bearer tokens to projects, with a short positive/negative cache."""

    def __init__(self, store: Store, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>' (create one with "
                "'assay keys create --project NAME')"
            )
        token = authorization[7:].strip()
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or now - hit[0] > self.ttl_s:
            project = self.store.project_for_key(digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, project)
        else:
            project = hit[1]
        if project is not None:
            return Principal(project, f"key:{token[: len(TOKEN_PREFIX) + 4]}")
        scope = self.store.job_token_scope(digest)  # not cached: dies with its job
        if scope is not None:
            return Principal(scope[0], f"job:{scope[1]}", trial_scope=scope[1])
        raise AuthenticationError("invalid or revoked API key")
