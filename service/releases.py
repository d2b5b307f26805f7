"""DP synthetic releases on a server: the file-based release store and its training worker.

A release (:func:`assay.generative.tabular.release.release_synthetic`, Sablayrolles et al.
2023) takes the private table either inline (``csv``: the CSV text) or as ``table``: a CSV or
Parquet file under the server's ``ASSAY_DATA_DIR/<project>/``. :func:`start_release` checks the
request in full before anything happens — shapes, schema, every row against the schema,
hyperparameters, the budget (no budget: 404; no room: 409 ``privacy_budget_exceeded``, nothing
stored) — then training runs in a background thread (one at a time per server process, the
:data:`TRAINING_SLOT`). The charge is made atomically after training (a concurrent release may
win the remaining budget: that release then ends ``failed`` with the same typed error and
nothing stored); the rows are sampled only after the charge.

Releases are files under ``ASSAY_RELEASE_DIR/<project>/<dataset>/<release_id>/``
(``release.json``, ``synthetic.csv``, ``report.json``); several servers need a shared
folder. The private table itself is never written to disk. ``release_id`` is the idempotency
key: repeating a request returns the same release (never a second sample under one charge);
reusing an id with a different request is 409. A record left ``running`` by a process that is
gone reads as ``failed`` (``interrupted``). A failed release is final; retry with a new id.

Owns the release folders, the pre-flight checks of a release request and the worker thread.
May import :mod:`assay.platform.errors`, the privacy bodies (:mod:`assay.service.schemas`),
:func:`assay.service.jobs.process.pid_alive` (is a training process still there),
:mod:`assay.generative.tabular` (the release, the table schema, the file formats) and pandas on
first use; no FastAPI (HTTP is :mod:`assay.service.api.privacy`'s) and no SQL (budgets are the
privacy ledger the caller opens).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assay.generative.tabular.io import is_parquet, read_table, write_table
from assay.platform.errors import (
    AssayError,
    ConflictError,
    NotFoundError,
    PrivacyBudgetExceededError,
    UnsupportedError,
    ValidationError,
)
from assay.service.jobs.process import pid_alive
from assay.service.limits import ServerBusyError
from assay.service.schemas.privacy import SAFE_NAME, SyntheticReleaseCreate
from assay.storage.ledger.state import FINGERPRINT_KEY

log = logging.getLogger("assay.service.privacy")

#: One training at a time per server process (a release holds it while it trains).
TRAINING_SLOT = threading.BoundedSemaphore(1)
_ACTIVE: set[str] = set()  # release folders with a training thread in this process
_ACTIVE_LOCK = threading.Lock()


#: Releases that may wait for the training slot or train in one server process.
MAX_RELEASE_QUEUE = 8


def project_folder(project: str) -> str:
    """A project's folder name: the name itself when path-safe, else a stable hash."""
    if re.fullmatch(SAFE_NAME, project) and project not in (".", ".."):
        return project
    return "_" + hashlib.sha256(project.encode()).hexdigest()[:24]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_json(path: Path, data: dict[str, Any], *, exclusive: bool = False) -> bool:
    """Write atomically; ``exclusive`` returns False instead if ``path`` already exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # atomic create-if-absent, with the content complete
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


class ReleaseStore:
    """The release folders of one (project, dataset), and the project's server data folder.

    Args:
        release_dir: ``ASSAY_RELEASE_DIR``, the root of every project's releases.
        data_dir: ``ASSAY_DATA_DIR``, the root of the server-side tables releases may read.
        project: The project (one folder per project under both roots).
        dataset: The dataset whose releases this store holds.
    """

    def __init__(
        self, release_dir: str | Path, data_dir: str | Path, project: str, dataset: str
    ) -> None:
        self.project, self.dataset = project, dataset
        self.root = Path(release_dir) / project_folder(project) / dataset
        self.data_dir = Path(data_dir) / project_folder(project)

    def record(self, release_id: str) -> dict[str, Any] | None:
        """The release's ``release.json`` (``None`` if there is none); a ``running`` record
        whose process is gone reads as ``failed`` with the code ``interrupted``."""
        path = self.root / release_id / "release.json"
        try:
            rec = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        if rec["status"] == "running" and not self._alive(rec, path.parent):
            error = {
                "code": "interrupted",
                "message": "the server stopped while this release was running; if it was "
                "charged, the budget stays spent. Start a new release with a new release_id.",
                "details": {},
            }
            rec = {**rec, "status": "failed", "finished_at": rec.get("finished_at"), "error": error}
        return rec

    def records(self) -> list[dict[str, Any]]:
        """Every release of the dataset, newest first."""
        recs = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                rec = self.record(folder.name)
                if rec is not None:
                    recs.append(rec)
        recs.sort(key=lambda r: r["created_at"], reverse=True)
        return recs

    def get(self, release_id: str) -> dict[str, Any]:
        """The release's record.

        Raises:
            NotFoundError: The dataset has no such release.
        """
        rec = self.record(release_id)
        if rec is None:
            raise NotFoundError(
                f"dataset {self.dataset!r} has no release {release_id!r}",
                details={"dataset": self.dataset, "release_id": release_id},
            )
        return rec

    def table(self, release_id: str) -> Path:
        """The synthetic table (CSV) of a succeeded release.

        Raises:
            NotFoundError: The dataset has no such release.
            ConflictError: The release is running or failed: it has no table.
        """
        rec = self.get(release_id)
        if rec["status"] != "succeeded":
            raise ConflictError(
                f"release {release_id!r} has no table: it is {rec['status']}",
                details={"dataset": self.dataset, "release_id": release_id,
                         "status": rec["status"]},
            )  # fmt: skip
        return self.root / release_id / "synthetic.csv"

    @staticmethod
    def _alive(rec: dict[str, Any], folder: Path) -> bool:
        if rec.get("host") != socket.gethostname():
            return True  # another server's release: trust its record
        if rec.get("pid") == os.getpid():
            with _ACTIVE_LOCK:
                return str(folder) in _ACTIVE
        return pid_alive(int(rec.get("pid", 0)))

    def server_table(self, name: str) -> Path:
        """A file under this project's data folder (no absolute paths, no escaping it)."""
        root = self.data_dir.resolve()
        path = (root / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(root):
            raise ValidationError(
                "table must be a path relative to the server's data folder for this project",
                field="table",
            )
        if not path.is_file():
            raise NotFoundError(
                f"table {name!r} is not in this project's server data folder", field="table"
            )
        return path


def read_private_table(body: SyntheticReleaseCreate, store: ReleaseStore) -> tuple[Any, str]:
    """The private table of a release request as a DataFrame and the SHA-256 of its bytes."""
    import pandas as pd

    field = "csv" if body.csv is not None else "table"
    if body.csv is not None:
        raw, source = body.csv.encode(), io.StringIO(body.csv)
        parquet = False
    else:
        assert body.table is not None
        path = store.server_table(body.table)
        raw = path.read_bytes()
        source = io.BytesIO(raw)
        parquet = is_parquet(path)
    try:
        df = read_table(source, parquet=parquet)
    except UnsupportedError as e:
        raise UnsupportedError("reading Parquet needs pyarrow on the server") from e
    except (ValueError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        raise ValidationError(f"cannot read the table: {e}", field=field) from e
    if len(df) == 0:
        raise ValidationError("the table has no rows", field="csv" if body.csv else "table")
    return df, hashlib.sha256(raw).hexdigest()


def fingerprint(body: SyntheticReleaseCreate, data_sha: str) -> str:
    """What makes two requests the same release: everything but the id and the table's form
    (inline or a file), with the table's content hash."""
    d = body.model_dump(by_alias=True, exclude={"csv", "table", "release_id"})
    d["data_sha256"] = data_sha
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def start_release(
    store: ReleaseStore,
    body: SyntheticReleaseCreate,
    open_ledger: Callable[[], Any],
    *,
    max_queue: int = MAX_RELEASE_QUEUE,
) -> tuple[dict[str, Any], bool]:
    """Check a release request in full, reserve its charge, then train it in a background
    thread.

    The charge (the request's ε, δ, with the request's fingerprint) is *reserved* when the
    request is accepted, atomically against the budget: releases waiting for the training
    slot can never together exceed it, and the training's own charge under the same id and
    fingerprint is then a retry, not a second charge. At most ``max_queue`` releases wait or
    train in this process; one more is 503 (nothing charged).

    Args:
        store: The dataset's release store.
        body: The request.
        open_ledger: Returns the project's privacy ledger (opened only for a new release).

    Returns:
        The release's record and whether this call started it (``False``: the same request
        came before under this ``release_id``, and this is its record).

    Raises:
        UnsupportedError: The server lacks pandas (or opacus for ``method="lm"``).
        ValidationError: Unreadable table, bad schema, a row outside the schema.
        NotFoundError: No budget for the dataset, or no such server table.
        PrivacyBudgetExceededError: The budget has no room for the release's (ε, δ).
        ConflictError: The ``release_id`` is taken by another request or already charged
            for a different request.
        ServerBusyError: ``max_queue`` releases are already queued here (503).
    """
    import importlib.util

    for module in ("pandas", "opacus") if body.method == "lm" else ("pandas",):
        if importlib.util.find_spec(module) is None:
            raise UnsupportedError(
                f"DP releases need {module!r} on the server: pip install 'assay[privacy]'"
            )
    from assay.generative.tabular.schema import RowCodec, TableSchema
    from assay.generative.tabular.train import TrainConfig

    name, project = store.dataset, store.project
    df, data_sha = read_private_table(body, store)
    request_print = fingerprint(body, data_sha)
    release_id = body.release_id or uuid.uuid4().hex

    def existing(rec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if rec["fingerprint"] != request_print:
            raise ConflictError(
                f"release {release_id!r} of dataset {name!r} exists with a different request; "
                "use a new release_id",
                field="release_id",
                details={"dataset": name, "release_id": release_id},
            )
        return rec, False

    rec = store.record(release_id)
    if rec is not None:
        return existing(rec)

    ledger = open_ledger()
    st = ledger.status(name)  # 404 without a budget
    if not st.allows(body.epsilon, body.delta):
        raise PrivacyBudgetExceededError(
            f"dataset {name!r}: release {release_id!r} needs epsilon={body.epsilon:g}, "
            f"delta={body.delta:g} but only epsilon={st.epsilon_remaining:g}, "
            f"delta={st.delta_remaining:g} remain of the budget (epsilon={st.epsilon_budget:g}, "
            f"delta={st.delta_budget:g})",
            field="epsilon",
            details={"dataset": name, "release_id": release_id,
                     "requested_epsilon": body.epsilon, "requested_delta": body.delta,
                     "epsilon_remaining": st.epsilon_remaining,
                     "delta_remaining": st.delta_remaining},
        )  # fmt: skip
    prior = next((c for c in ledger.charges(name) if c.release_id == release_id), None)
    if prior is not None and prior.metadata.get(FINGERPRINT_KEY) != request_print:
        raise ConflictError(
            f"dataset {name!r}: release id {release_id!r} was already charged for another "
            "request (e.g. by `assay synth release`); use a new release_id",
            field="release_id",
            details={"dataset": name, "release_id": release_id},
        )
    try:
        schema = TableSchema.from_dict(body.table_schema)
    except ValidationError as e:
        raise ValidationError(f"schema: {e.message}", field=f"schema.{e.field or ''}") from e
    RowCodec(schema).to_codes(df)  # every row against the schema, before anything is stored
    hyper = body.hyperparameters.model_dump()
    config = TrainConfig(epsilon=body.epsilon, delta=body.delta, seed=body.seed, **hyper)

    folder = store.root / release_id
    with _ACTIVE_LOCK:  # a bounded queue: refuse before charging anything
        if len(_ACTIVE) >= max_queue:
            raise ServerBusyError(
                f"{len(_ACTIVE)} releases are queued on this server (at most {max_queue}); "
                "retry later",
                details={"queued": len(_ACTIVE), "max_queue": max_queue},
            )
        _ACTIVE.add(str(folder))
    try:
        ledger.charge(  # the reservation: atomic against the budget (409/402-style refusals)
            name, body.epsilon, body.delta, release_id=release_id,
            description=f"synthetic table ({body.method}), reserved when accepted",
            metadata={"method": body.method, "target_epsilon": body.epsilon,
                      "reserved": True, FINGERPRINT_KEY: request_print},
        )  # fmt: skip
    except BaseException:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(folder))
        raise
    folder.mkdir(parents=True, exist_ok=True)
    rec = {
        "release_id": release_id, "dataset": name, "project": project, "status": "running",
        "method": body.method, "epsilon": body.epsilon, "delta": body.delta,
        "rows_in": len(df), "hyperparameters": hyper, "created_at": _now(),
        "finished_at": None, "fingerprint": request_print, "pid": os.getpid(),
        "host": socket.gethostname(), "report": None, "error": None,
    }  # fmt: skip
    if not _write_json(folder / "release.json", rec, exclusive=True):  # a concurrent twin
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(folder))
        return existing(store.record(release_id) or rec)
    kwargs = dict(
        schema=schema, table=df, epsilon=body.epsilon, delta=body.delta, method=body.method,
        n_rows=body.rows, config=config, ledger=ledger, dataset=name, release_id=release_id,
        seed=body.seed, fingerprint=request_print,
    )  # fmt: skip
    started = dict(rec)  # the worker updates ``rec`` as it goes; the caller sees it started
    threading.Thread(
        target=_train_and_write, args=(folder, rec, kwargs, schema.names),
        name=f"assay-release-{release_id}", daemon=True,
    ).start()  # fmt: skip
    return started, True


def _train_and_write(
    folder: Path, rec: dict[str, Any], kwargs: dict[str, Any], columns: list[str]
) -> None:
    """The background half of a release: train, charge, sample, write; record the outcome."""
    from assay.generative.tabular.release import release_synthetic

    try:
        with TRAINING_SLOT:
            release = release_synthetic(**kwargs)
        write_table(release.rows, columns, folder / "synthetic.csv")
        _write_json(folder / "report.json", release.report)
        rec.update(status="succeeded", report=release.report)
    except AssayError as e:
        rec.update(status="failed", error=e.to_dict())
    except Exception as e:  # recorded, and logged with its traceback
        log.exception("release %s failed", folder)
        rec.update(
            status="failed",
            error={"code": "internal_error", "message": f"{type(e).__name__}: {e}",
                   "details": {}},
        )  # fmt: skip
    finally:
        rec["finished_at"] = _now()
        try:
            _write_json(folder / "release.json", rec)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(str(folder))


__all__ = [
    "TRAINING_SLOT",
    "ReleaseStore",
    "fingerprint",
    "project_folder",
    "read_private_table",
    "start_release",
]
