"""Dashboard sign-in: the same API keys as the REST API, entered once, then a server-side session.

The login page takes an API key, checks it, and opens a session: a random 256-bit id that
only the browser holds (cookie ``assay_session``: ``HttpOnly``, ``SameSite=Strict``,
``Secure`` on https or behind a proxy that says so), stored as its SHA-256 in
``dashboard_sessions`` with an expiry. Every page reads the session row joined to its key, so
signing out ends it and revoking the key ends every session opened with it — on every replica,
at once. A database reader learns only hashes of session ids, which sign nobody in.

Job tokens (trial-scoped) are refused here: they may report for their own trial over the REST
API, never browse the project. Login attempts are rate-limited per client address (429).
Forms carry a CSRF token (double-submit: a random ``assay_csrf`` cookie, ``SameSite=Strict``,
echoed in a hidden field); the middleware in :mod:`assay.service.security` also refuses
cross-site state changes. In local no-auth mode (see :func:`assay.service.auth.needs_key`)
nobody signs in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response

from assay.platform.errors import AuthenticationError, ForbiddenError
from assay.service.auth import LOCAL, Principal, needs_key, principal_for_key

COOKIE = "assay_session"
CSRF_COOKIE = "assay_csrf"


class LoginRequired(AuthenticationError):
    """No (valid) session: the browser is sent to the login page."""

    code = "login_required"


class TooManyAttempts(AuthenticationError):
    """Too many sign-in attempts from one address in a minute."""

    code = "too_many_attempts"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def auth_required(request: Request) -> bool:
    """Whether this request must be signed in (per request: see ``needs_key``)."""
    return needs_key(request)


def principal(request: Request) -> Principal:
    """Who is looking. Raises :class:`LoginRequired` without a valid session, and
    ``ForbiddenError`` for a job's trial-scoped token."""
    if not auth_required(request):
        return LOCAL
    header = request.headers.get("authorization")
    if header:
        who = request.app.state.keys.resolve(header)
        if who.trial_scope is not None:
            raise ForbiddenError(
                "a job token may only report for its own trial; it cannot open the dashboard"
            )
        return who
    session_id = request.cookies.get(COOKIE, "")
    if not session_id:
        raise LoginRequired("sign in with an API key to see this project's experiments")
    key = request.app.state.store.session_key(_digest(session_id), now=datetime.now(UTC))
    if key is None:
        raise LoginRequired("this session has ended (signed out, expired or key revoked)")
    return principal_for_key(key, "dashboard")


class LoginLimiter:
    """At most ``per_min`` sign-in attempts per client address in any 60 s (a sliding window,
    in this process: a deterrent against guessing, not a global quota)."""

    def __init__(self, per_min: int) -> None:
        self.per_min = per_min
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 10_000:
                self._hits.clear()
            q = self._hits.setdefault(client, deque())
            while q and now - q[0] > 60.0:
                q.popleft()
            if len(q) >= self.per_min:
                raise TooManyAttempts(
                    "too many sign-in attempts from this address; wait a minute",
                    details={"retry_after_s": int(60 - (now - q[0])) + 1},
                )
            q.append(now)


def _limiter(request: Request) -> LoginLimiter:
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = state.login_limiter = LoginLimiter(state.settings.login_attempts_per_min)
    return limiter


def login(request: Request, key: str) -> tuple[Principal, str]:
    """Check a pasted key (rate-limited) and open a session; returns ``(who, session id)``."""
    _limiter(request).check(request.client.host if request.client else "?")
    key = key.strip()
    if not key:
        raise AuthenticationError("paste an API key (create one with 'assay keys create')")
    who = request.app.state.keys.resolve(f"Bearer {key}")
    if who.trial_scope is not None or who.key_id is None:
        raise AuthenticationError("a job token cannot sign in to the dashboard; use an API key")
    session_id = secrets.token_urlsafe(32)
    ttl = request.app.state.settings.session_ttl_s
    request.app.state.store.create_session(
        _digest(session_id), who.key_id, expires_at=datetime.now(UTC) + timedelta(seconds=ttl)
    )
    return who, session_id


def logout(request: Request) -> None:
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        request.app.state.store.end_session(_digest(session_id), now=datetime.now(UTC))


def secure_cookies(request: Request) -> bool:
    """``Secure`` cookies on https, behind a proxy that forwarded https, or when configured."""
    mode = request.app.state.settings.secure_cookies
    if mode != "auto":
        return mode == "always"
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    forwarded = request.headers.get("forwarded", "").lower()
    return request.url.scheme == "https" or proto == "https" or "proto=https" in forwarded


def set_session_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        COOKIE, session_id, max_age=int(request.app.state.settings.session_ttl_s),
        httponly=True, samesite="strict", secure=secure_cookies(request), path="/",
    )  # fmt: skip


# -- CSRF ------------------------------------------------------------------------------------
def csrf_token(request: Request) -> str:
    """The form token of this browser (its ``assay_csrf`` cookie, or a new one that
    :func:`attach_csrf_cookie` sets on the response)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = getattr(request.state, "new_csrf", "") or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def attach_csrf_cookie(request: Request, response: Response) -> None:
    token = getattr(request.state, "new_csrf", "")
    if token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict",
            secure=secure_cookies(request), path="/",
        )  # fmt: skip


def check_csrf(request: Request, submitted: str) -> None:
    """``ForbiddenError`` unless the form's token equals the browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if len(cookie) < 32 or not hmac.compare_digest(cookie, submitted or ""):
        raise ForbiddenError(
            "the form's CSRF token is missing or stale; reload the page and try again",
            field="csrf",
        )
