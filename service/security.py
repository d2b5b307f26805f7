"""Request checks that run before routing (a plain ASGI middleware, so they cost microseconds).

* **Host allowlist** (``ASSAY_ALLOWED_HOSTS``): a ``Host`` outside it answers 400. Behind a
  proxy, list the public names; it is what defeats DNS rebinding on a server that does not
  require keys for every request.
* **Cross-site requests**: a request that carries no ``Authorization`` header (a dashboard
  cookie, or local no-auth mode: what a browser sends on its own) is refused (403) when it
  changes state, or is a script's read, and comes from another site: ``Sec-Fetch-Site:
  cross-site`` or an ``Origin`` other than the ``Host`` it was sent to. A bearer key cannot be
  attached cross-site without a CORS preflight, which the server never grants.
* **JSON only**: a state-changing ``/api/`` request with a body (or a ``Content-Type``) must be
  ``application/json`` (415): HTML forms cannot send it cross-site without a preflight.

Owns nothing else; the per-request auth decision is :func:`assay.service.auth.needs_key`.
"""

from __future__ import annotations

import fnmatch
from typing import Any
from urllib.parse import urlsplit

from assay.service.errors import error_response

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Whether ``host`` (port stripped) matches one of ``patterns`` (``*`` wildcards)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return any(p == "*" or fnmatch.fnmatchcase(name, p) for p in patterns)


def _same_origin(origin: str, host: str, forwarded_host: str | None) -> bool:
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and netloc in {host.lower(), (forwarded_host or "").lower()}


class SecurityMiddleware:
    """See the module docstring. ``settings`` is :class:`~assay.service.settings.Settings`."""

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.patterns = settings.host_patterns

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        h: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            h.setdefault(name, value)
        host = h.get(b"host", b"").decode("latin-1")
        refusal = self._refusal(scope, h, host)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict[str, Any], h: dict[bytes, bytes], host: str) -> Any:
        if self.patterns and not host_allowed(host, self.patterns):
            return error_response(
                400, "invalid_host", f"this server does not answer for host {host!r}",
                {"field": "Host", "allowed_hosts": self.patterns},
            )  # fmt: skip
        method = scope["method"]
        changes = method not in READ_METHODS
        if b"authorization" not in h:
            site = h.get(b"sec-fetch-site", b"").decode("latin-1").lower()
            origin = h.get(b"origin")
            fwd = h.get(b"x-forwarded-host")
            cross = site == "cross-site" or (
                origin is not None
                and not _same_origin(
                    origin.decode("latin-1"), host, fwd.decode("latin-1") if fwd else None
                )
            )
            navigation = h.get(b"sec-fetch-mode", b"navigate") == b"navigate"
            if cross and (changes or not navigation):
                return error_response(
                    403, "cross_site_request",
                    "cross-site requests without an API key are refused (CSRF / DNS rebinding "
                    "protection); send 'Authorization: Bearer <key>'",
                    {"field": "Origin" if origin is not None else "Sec-Fetch-Site"},
                )  # fmt: skip
        if changes and scope["path"].startswith("/api/"):
            ctype = h.get(b"content-type")
            has_body = h.get(b"content-length", b"0") not in (b"0", b"") or (
                b"transfer-encoding" in h
            )
            if ctype is not None or has_body:
                media = (ctype or b"").split(b";", 1)[0].strip().lower()
                if media != b"application/json":
                    return error_response(
                        415, "unsupported_media_type",
                        "state-changing requests must send 'Content-Type: application/json'",
                        {"field": "Content-Type", "got": media.decode("latin-1")},
                    )  # fmt: skip
        return None
