"""Dashboard sign-in: the same API keys as the REST API, entered once.

In keys mode the login page takes an API key, checks it, and sets an HTTP-only, SameSite=Lax
cookie holding the key's SHA-256 digest — never the key itself, so a copied cookie cannot call
the REST API, and revoking the key signs the browser out (every request resolves the digest
against the stored key hashes, cached briefly). The digest of a 256-bit random token is as
unguessable as a signed session id, so it needs no extra signature. In local no-auth mode
(server bound to a loopback address) nobody signs in.
"""

from __future__ import annotations

import re
import threading
import time

from fastapi import Request

from assay.platform.errors import AuthenticationError
from assay.service.auth import Principal, hash_token

COOKIE = "assay_session"
COOKIE_MAX_AGE_S = 14 * 24 * 3600
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class LoginRequired(AuthenticationError):
    """No (valid) session: the browser is sent to the login page."""

    code = "login_required"


class _DigestCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._hits: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def project(self, store, digest: str) -> str | None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        with self._lock:
            hit = self._hits.get(digest)
        if hit is not None and now - hit[0] <= self.ttl_s:
            return hit[1]
        project = store.project_for_key(digest)
        with self._lock:
            if len(self._hits) > 10_000:
                self._hits.clear()
            self._hits[digest] = (now, project)
        return project


def _cache(request: Request) -> _DigestCache:
    state = request.app.state
    cache = getattr(state, "dashboard_sessions", None)
    if cache is None:
        cache = state.dashboard_sessions = _DigestCache(state.settings.key_cache_s)
    return cache


def auth_required(request: Request) -> bool:
    return bool(request.app.state.settings.auth_required)


def principal(request: Request) -> Principal:
    """Who is looking. Raises :class:`LoginRequired` in keys mode without a valid session."""
    if not auth_required(request):
        return Principal(None, "local")
    header = request.headers.get("authorization")
    if header:
        return request.app.state.keys.resolve(header)
    digest = request.cookies.get(COOKIE, "")
    if not _DIGEST.match(digest):
        raise LoginRequired("sign in with an API key to see this project's experiments")
    project = _cache(request).project(request.app.state.store, digest)
    if project is None:
        raise LoginRequired("this session's API key was revoked or is unknown; sign in again")
    return Principal(project, "dashboard")


def check_key(request: Request, key: str) -> tuple[str, str]:
    """Validate a pasted key; returns ``(project, cookie value)``."""
    key = key.strip()
    if not key:
        raise AuthenticationError("paste an API key (create one with 'assay keys create')")
    who = request.app.state.keys.resolve(f"Bearer {key}")
    return who.write_project, hash_token(key)
