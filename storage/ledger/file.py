"""The privacy ledger in one JSON file: ``assay synth`` offline, when no database URL is given.

May import: the standard library and :mod:`assay.storage.ledger`'s ``base`` / ``state``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from assay.platform.errors import ValidationError
from assay.storage.ledger.base import StateLedger
from assay.storage.ledger.state import LedgerState


class JsonFilePrivacyLedger(StateLedger):
    """A ledger in one JSON file (``{"version": 1, "datasets": <state>}``).

    Every operation takes an exclusive ``fcntl`` lock on ``<path>.lock``, reads the file,
    applies the change and replaces the file atomically (write to a temporary file, fsync,
    ``os.replace``), so concurrent processes on one machine serialise and a crash never leaves
    a half-written ledger. (Not for network file systems without working ``flock``.)

    Args:
        path: The JSON file (created on first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[LedgerState]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> LedgerState:
        if not self.path.exists():
            return {}
        with open(self.path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValidationError(f"{self.path} is not an Assay privacy ledger", field="ledger")
        return data["datasets"]

    def _save(self, state: LedgerState) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "datasets": state}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


__all__ = ["JsonFilePrivacyLedger"]
