"""Who is calling and what they may do: API keys with roles, and the local no-auth rule.

Keys are ``assay_<random>`` tokens, stored only as SHA-256 hashes, one project and one
:class:`Role` per key. The tokens carry 256 bits of randomness, so a fast hash is safe (there
is nothing to brute force). Every request reads its key row (one indexed primary-key-sized
read): there is no positive cache, so a revoked key stops working on the next request on every
replica; only *unknown* digests are cached briefly (a random token never becomes valid later).

No authentication is allowed only for a request that is local in every respect
(:func:`is_local_request`): the server socket is bound to loopback, the peer is loopback, the
``Host`` names a loopback address (so a DNS-rebinding page in a browser, whose requests carry
the attacker's host name, needs a key), and no proxy added ``Forwarded``/``X-Forwarded-*``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from assay.platform.errors import AuthenticationError, ForbiddenError
from assay.storage.base import ApiKeyInfo, Store

TOKEN_PREFIX = "assay_"


class Role(StrEnum):
    """What a key may do. ``viewer``: read (``GET``); ``member``: also experiments, ask/tell,
    batches, runs, releases; ``admin``: also keys and privacy budgets of its project."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 4]


def create_api_key(
    store: Store, project: str, name: str = "default", role: Role | str = Role.MEMBER
) -> str:
    """Create a key for ``project`` (creating the project if needed); returns the token.

    The token is shown once; only its hash is stored.
    """
    role = Role(role)
    token = new_token()
    store.add_api_key(
        project, hash_token(token), name=name, prefix=token_prefix(token), role=role.value
    )
    return token


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``project=None`` means every project (local no-auth mode);
    ``trial_scope`` is set for a job's scoped token (it may only report for that trial);
    ``key_id`` is the API key's id (``None`` for local mode and job tokens)."""

    project: str | None
    actor: str
    trial_scope: int | None = None
    role: Role = Role.VIEWER
    key_id: int | None = None

    @property
    def write_project(self) -> str:
        return self.project or "default"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require(self, needed: Role, what: str) -> None:
        """``ForbiddenError`` (403) naming the role needed unless this principal has it."""
        if not self.role.allows(needed):
            raise ForbiddenError(
                f"{what} needs a key with role '{needed.value}' or higher; this key is "
                f"'{self.role.value}'",
                details={"role_needed": needed.value, "role": self.role.value},
            )


LOCAL = Principal(None, "local", role=Role.ADMIN)


def principal_for_key(key: ApiKeyInfo, actor: str | None = None) -> Principal:
    return Principal(key.project, actor or f"key:{key.prefix}", role=Role(key.role), key_id=key.id)


class KeyResolver:
    """Resolves bearer tokens to principals: one read per request (no positive cache, so
    revocation is immediate everywhere), a short negative cache for unknown digests."""

    def __init__(self, store: Store, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()

    def resolve(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>' (create one with "
                "'assay keys create --project NAME --role member')"
            )
        token = authorization[7:].strip()
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            seen = self._unknown.get(digest)
        if seen is None or now - seen > self.ttl_s:
            key = self.store.key_for_hash(digest)
            if key is not None:
                return principal_for_key(key, f"key:{token_prefix(token)}")
            with self._lock:
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown[digest] = now
        scope = self.store.job_token_scope(digest)  # never cached: lives and dies with its job
        if scope is not None:
            return Principal(scope[0], f"job:{scope[1]}", trial_scope=scope[1], role=Role.MEMBER)
        raise AuthenticationError("invalid or revoked API key")


# -- exposure ----------------------------------------------------------------------------------
#: Headers a reverse proxy adds; their presence means the request did not come from here.
FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-forwarded-host",
                      b"x-forwarded-proto", b"x-forwarded-port", b"x-real-ip")  # fmt: skip


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` (brackets and port allowed)."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_request(scope: dict[str, Any], socket_loopback: bool) -> bool:
    """All four conditions of local no-auth mode (see the module docstring)."""
    if not socket_loopback:
        return False
    client = scope.get("client")
    if not client or not is_loopback_host(str(client[0])):
        return False
    host = None
    for name, value in scope.get("headers", ()):
        if name in FORWARDING_HEADERS:
            return False
        if name == b"host":
            host = value.decode("latin-1")
    return is_loopback_host(host)


def needs_key(request: Any) -> bool:
    """Whether this request must authenticate (``ASSAY_AUTH``: ``keys`` always; ``none``
    never; ``auto`` unless :func:`is_local_request`)."""
    settings = request.app.state.settings
    if settings.auth == "keys":
        return True
    if settings.auth == "none":
        return False
    return not is_local_request(request.scope, settings.loopback)
