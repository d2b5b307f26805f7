"""What one request may cost: the body-size cap, the caps on generator settings, and the
bounded pool (with a cache) that model work runs in.

* :class:`BodyLimitMiddleware` (outermost ASGI layer, so it runs before routing, parsing and
  authentication): a declared ``Content-Length`` over the cap is answered 413 at once; a
  chunked or undeclared body is read up to the cap and answered 413 as soon as it passes it.
  Nothing of an oversized body is parsed.
* :func:`check_generator_settings`: server-side ceilings on the knobs that buy model work
  (``raw_samples``, ``num_restarts``, ``max_seconds``, ...): 422 naming the field.
* :class:`ModelWork`: asks, ``/best``, ``/effects`` and dashboard panels fit models; at most
  ``slots`` such calls run at once per server (a waiter past ``wait_s`` gets 503 +
  ``Retry-After``), and ``best``/``effects`` results are cached per (experiment, data version).

May import: the standard library, :mod:`assay.platform`, :mod:`assay.service.errors`.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from assay.platform.errors import StorageBusyError, ValidationError

T = TypeVar("T")

#: Default request body cap (``ASSAY_MAX_BODY_BYTES``), and for a release's CSV upload
#: (``ASSAY_MAX_UPLOAD_BYTES``).
MAX_BODY_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 64 << 20


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a JSON 413 (see the module docstring).
    ``POST .../synthetic-releases`` (a table uploaded as CSV) may carry ``upload_bytes``."""

    def __init__(
        self, app: Any, max_bytes: int = MAX_BODY_BYTES, upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = max(upload_bytes, max_bytes)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if scope.get("method") == "POST" and scope.get("path", "").endswith("/synthetic-releases"):
            limit = self.upload_bytes
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _too_large(send, limit, "invalid Content-Length")
                    return
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        # Read the whole body (at most max_bytes) before the app sees any of it, so an
        # endless chunked body is cut off here and not parsed or buffered past the cap.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when the client goes away

        await self.app(scope, replay, send)


async def _too_large(send: Callable, limit: int, why: str | None = None) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": why or f"the request body is larger than {limit} bytes",
                "details": {"max_body_bytes": limit},
            }
        }
    ).encode()
    status = 400 if why else 413
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Ceilings on generator settings (``ASSAY_GENERATOR_CAPS`` overrides, JSON): model work one
#: request may buy. Defaults are well above every built-in generator's default.
GENERATOR_CAPS: dict[str, float] = {
    "raw_samples": 4096,
    "num_restarts": 64,
    "max_seconds": 600,
    "num_fantasies": 256,
    "mc_samples": 4096,
    "num_samples": 4096,
    "n_candidates": 100_000,
    "num_candidates": 100_000,
    "batch_limit": 256,
    "num_initial_trials": 10_000,
    "warmup_steps": 10_000,
    "num_steps": 10_000,
}


def check_generator_settings(
    settings: Mapping[str, Any], caps: Mapping[str, float] | None = None, *, path: str = ""
) -> None:
    """Raise :class:`ValidationError` (``field`` ``generator_settings.<name>``) for a numeric
    setting over its cap, at any depth of nested settings."""
    caps = GENERATOR_CAPS if caps is None else caps
    for name, value in settings.items():
        where = f"{path}.{name}" if path else f"generator_settings.{name}"
        if isinstance(value, Mapping):
            check_generator_settings(value, caps, path=where)
            continue
        cap = caps.get(str(name))
        if cap is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value > cap:
            raise ValidationError(
                f"{where} = {value:g} is over this server's cap of {cap:g}", field=where
            )


def data_version(experiment: Any) -> int:
    """A fingerprint of everything an analysis of ``experiment`` reads: its status and each
    trial's id, state, observations' update time (a tell, fail or new trial changes it)."""
    return hash(
        (
            experiment.id,
            str(experiment.status),
            tuple((t.id, str(t.state), t.updated_at) for t in experiment.trials),
        )
    )


class ModelWork:
    """A bounded pool for model fitting with a small result cache (see the module docstring).

    Args:
        slots: Calls that may fit models at once in this process.
        wait_s: Longest wait for a slot before 503.
        cache_size: Results kept (least recently used dropped first).
    """

    def __init__(self, slots: int = 4, wait_s: float = 30.0, cache_size: int = 256) -> None:
        self.slots = max(1, int(slots))
        self.wait_s = wait_s
        self._sem = threading.BoundedSemaphore(self.slots)
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` within a slot; :class:`StorageBusyError` (503) when none frees in time."""
        if not self._sem.acquire(timeout=self.wait_s):
            raise ServerBusyError(
                f"the server is busy fitting models ({self.slots} at once); retry shortly",
                details={"slots": self.slots},
            )
        try:
            return fn()
        finally:
            self._sem.release()

    def cached(self, key: Hashable, fn: Callable[[], T]) -> T:
        """``fn()``'s result for ``key`` (computed within a slot once per key)."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = self.run(fn)
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value


class ServerBusyError(StorageBusyError):
    """Every model-work slot stayed taken for the bounded wait (503 + ``Retry-After``)."""

    code = "server_busy"
    retry_after_s = 2
