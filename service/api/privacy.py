"""Private data: per-dataset privacy budgets and DP synthetic releases of a table.

::

    PUT  /datasets/{name}/privacy-budget                      set / raise the (ε, δ) budget
    GET  /datasets/{name}/privacy-budget                      budget, spend, charged releases
    POST /datasets/{name}/synthetic-releases                  release a DP synthetic copy (202)
    GET  /datasets/{name}/synthetic-releases                  this dataset's releases
    GET  /datasets/{name}/synthetic-releases/{release_id}         status + privacy report
    GET  /datasets/{name}/synthetic-releases/{release_id}/table   the synthetic CSV

Budgets live in the store's privacy ledger (:mod:`assay.storage.sql.ledger` on SQL), one
per (project, dataset); another project's datasets answer 404 like its experiments.

A release (:func:`assay.generative.tabular.release.release_synthetic`, Sablayrolles et al.
2023) takes the private table either inline (``csv``: the CSV text) or as ``table``: a CSV or
Parquet file under the server's ``ASSAY_DATA_DIR/<project>/``. The request is checked in full
before anything happens — shapes, schema, every row against the schema, hyperparameters, the
budget (no budget: 404; no room: 409 ``privacy_budget_exceeded``, nothing stored) — then
training runs in a background thread (one at a time per server process) and the answer is
``202`` with ``Location`` = the status URL. The charge is made atomically after training
(a concurrent release may win the remaining budget: that release then ends ``failed`` with
the same typed error and nothing stored); the rows are sampled only after the charge.

Releases are files under ``ASSAY_RELEASE_DIR/<project>/<dataset>/<release_id>/``
(``release.json``, ``synthetic.csv``, ``report.json``); several servers need a shared
folder. The private table itself is never written to disk. ``release_id`` is the idempotency
key: repeating a request returns the same release (never a second sample under one charge);
reusing an id with a different request is 409. A failed release is final; retry with a new id.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assay.platform.errors import (
    AssayError,
    ConflictError,
    NotFoundError,
    UnsupportedError,
    ValidationError,
)
from assay.service.deps import EngineDep, PrincipalDep
from assay.service.schemas import ErrorBody

log = logging.getLogger("assay.service.privacy")
router = APIRouter(tags=["privacy"])

_SAFE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
DatasetName = Annotated[str, PathParam(pattern=f"^{_SAFE}$", max_length=200)]
ReleaseId = Annotated[str, PathParam(pattern=f"^{_SAFE}$", max_length=200)]
MAX_CSV_CHARS = 50_000_000


# -- bodies --------------------------------------------------------------------------------
class PrivacyBudgetIn(BaseModel):
    """A dataset's total (ε, δ); releases are charged against it (basic composition)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"epsilon": 10.0, "delta": 1e-5}]}
    )
    epsilon: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    delta: float = Field(ge=0, lt=1, allow_inf_nan=False)


class ChargePublic(BaseModel):
    release_id: str
    epsilon: float
    delta: float
    description: str
    metadata: dict[str, Any]
    created_at: str


class PrivacyBudgetPublic(BaseModel):
    dataset: str
    epsilon_budget: float
    delta_budget: float
    epsilon_spent: float
    delta_spent: float
    epsilon_remaining: float
    delta_remaining: float
    releases: int
    charges: list[ChargePublic]


class TrainingIn(BaseModel):
    """DP-SGD hyperparameters of the language model (``method="lm"``)."""

    model_config = ConfigDict(extra="forbid")
    epochs: float = Field(5.0, gt=0, le=100, allow_inf_nan=False)
    batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(3e-3, gt=0, le=1, allow_inf_nan=False)
    max_grad_norm: float = Field(1.0, gt=0, le=1e4, allow_inf_nan=False)
    d_model: int = Field(64, ge=4, le=512)
    n_layers: int = Field(2, ge=1, le=8)
    n_heads: int = Field(4, ge=1, le=16)


class SyntheticReleaseCreate(BaseModel):
    """A DP synthetic release of one table: the public schema, the private data (exactly one
    of ``csv`` or ``table``), the release's (ε, δ) and the mechanism."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "schema": {
                        "columns": [
                            {"name": "arm", "type": "categorical", "values": ["A", "B"]},
                            {"name": "clicks", "type": "numeric", "lower": 0, "upper": 50,
                             "bins": 10, "integer": True},
                        ]
                    },
                    "csv": "arm,clicks\nA,3\nB,0\n",
                    "epsilon": 1.0,
                    "delta": 1e-6,
                    "method": "lm",
                    "hyperparameters": {"epochs": 3, "batch_size": 128},
                    "release_id": "weekly-2026-49",
                }
            ]
        },
    )  # fmt: skip
    table_schema: dict[str, Any] = Field(alias="schema")
    csv: str | None = Field(None, max_length=MAX_CSV_CHARS, description="the table as CSV text")
    table: str | None = Field(
        None,
        max_length=500,
        description="a .csv/.parquet file under the server's ASSAY_DATA_DIR/<project>/",
    )
    epsilon: float = Field(gt=0, le=1e3, allow_inf_nan=False)
    delta: float = Field(1e-6, gt=0, lt=1, allow_inf_nan=False)
    method: Literal["lm", "mst"] = "lm"
    hyperparameters: TrainingIn = Field(default_factory=TrainingIn)
    rows: int | None = Field(None, ge=1, le=1_000_000, description="synthetic rows")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    release_id: str | None = Field(None, pattern=f"^{_SAFE}$", max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> SyntheticReleaseCreate:
        if (self.csv is None) == (self.table is None):
            raise ValueError("give exactly one of 'csv' (the table inline) or 'table'")
        return self


class SyntheticReleasePublic(BaseModel):
    release_id: str
    dataset: str
    status: Literal["running", "succeeded", "failed"]
    method: str
    epsilon: float
    delta: float
    rows_in: int
    created_at: str
    finished_at: str | None = None
    status_url: str
    table_url: str | None = None
    report: dict[str, Any] | None = None
    error: ErrorBody | None = None


class SyntheticReleaseList(BaseModel):
    releases: list[SyntheticReleasePublic]


# -- files ---------------------------------------------------------------------------------
def _component(project: str) -> str:
    """A project's folder name: the name itself when path-safe, else a stable hash."""
    if re.fullmatch(_SAFE, project) and project not in (".", ".."):
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


_ACTIVE: set[str] = set()  # release folders with a training thread in this process
_ACTIVE_LOCK = threading.Lock()
_TRAINING = threading.BoundedSemaphore(1)  # one training at a time per server process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Releases:
    """The release folders of one (project, dataset)."""

    def __init__(self, request: Request, project: str, dataset: str) -> None:
        settings = request.app.state.settings
        self.project, self.dataset = project, dataset
        self.root = Path(settings.release_dir) / _component(project) / dataset
        self.data_dir = Path(settings.data_dir) / _component(project)

    def record(self, release_id: str) -> dict[str, Any] | None:
        path = self.root / release_id / "release.json"
        try:
            rec = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        if rec["status"] == "running" and not self._alive(rec, path.parent):
            rec = {**rec, "status": "failed", "finished_at": rec.get("finished_at"),
                   "error": {"code": "interrupted", "message": "the server stopped while this "
                             "release was running; if it was charged, the budget stays spent. "
                             "Start a new release with a new release_id.", "details": {}}}  # fmt: skip
        return rec

    @staticmethod
    def _alive(rec: dict[str, Any], folder: Path) -> bool:
        if rec.get("host") != socket.gethostname():
            return True  # another server's release: trust its record
        if rec.get("pid") == os.getpid():
            with _ACTIVE_LOCK:
                return str(folder) in _ACTIVE
        return _pid_alive(int(rec.get("pid", 0)))

    def public(self, rec: dict[str, Any]) -> SyntheticReleasePublic:
        base = f"/api/v1/datasets/{self.dataset}/synthetic-releases/{rec['release_id']}"
        return SyntheticReleasePublic(
            release_id=rec["release_id"], dataset=self.dataset, status=rec["status"],
            method=rec["method"], epsilon=rec["epsilon"], delta=rec["delta"],
            rows_in=rec["rows_in"], created_at=rec["created_at"],
            finished_at=rec.get("finished_at"), status_url=base,
            table_url=f"{base}/table" if rec["status"] == "succeeded" else None,
            report=rec.get("report"), error=rec.get("error"),
        )  # fmt: skip

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


def _read_table(body: SyntheticReleaseCreate, releases: _Releases) -> tuple[Any, str]:
    """The private table as a DataFrame and the SHA-256 of its bytes."""
    import pandas as pd

    if body.csv is not None:
        raw, source = body.csv.encode(), io.StringIO(body.csv)
        parquet = False
    else:
        assert body.table is not None
        path = releases.server_table(body.table)
        raw = path.read_bytes()
        source = io.BytesIO(raw)
        parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            try:
                df = pd.read_parquet(source)
            except ImportError as e:
                raise UnsupportedError("reading Parquet needs pyarrow on the server") from e
        else:
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as e:  # EmptyDataError is a ValueError
        field = "csv" if body.csv is not None else "table"
        raise ValidationError(f"cannot read the table: {e}", field=field) from e
    if len(df) == 0:
        raise ValidationError("the table has no rows", field="csv" if body.csv else "table")
    return df, hashlib.sha256(raw).hexdigest()


def _fingerprint(body: SyntheticReleaseCreate, data_sha: str) -> str:
    d = body.model_dump(by_alias=True, exclude={"csv", "table", "release_id"})
    d["data_sha256"] = data_sha
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _train_and_write(
    folder: Path, rec: dict[str, Any], kwargs: dict[str, Any], columns: list[str]
) -> None:
    """The background half of a release: train, charge, sample, write; record the outcome."""
    from assay.generative.tabular.release import release_synthetic
    from assay.service.cli_synth import write_table

    try:
        with _TRAINING:
            release = release_synthetic(**kwargs)
        write_table(release.rows, columns, str(folder / "synthetic.csv"))
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


# -- budgets -------------------------------------------------------------------------------
def _budget_public(ledger: Any, dataset: str) -> PrivacyBudgetPublic:
    st = ledger.status(dataset).to_dict()
    charges = [ChargePublic(**{k: v for k, v in c.__dict__.items() if k != "dataset"})
               for c in ledger.charges(dataset)]  # fmt: skip
    return PrivacyBudgetPublic(**st, charges=charges)


@router.put("/datasets/{name}/privacy-budget", response_model=PrivacyBudgetPublic)
def put_budget(name: DatasetName, body: PrivacyBudgetIn, engine: EngineDep, who: PrincipalDep):
    """Create or change the dataset's budget (never below what is already spent: 409)."""
    ledger = engine.store.privacy_ledger(who.write_project)
    ledger.set_budget(name, body.epsilon, body.delta)
    return _budget_public(ledger, name)


@router.get("/datasets/{name}/privacy-budget", response_model=PrivacyBudgetPublic)
def get_budget(name: DatasetName, engine: EngineDep, who: PrincipalDep):
    """The budget, what is spent and remains, and every charged release (oldest first)."""
    return _budget_public(engine.store.privacy_ledger(who.write_project), name)


# -- releases ------------------------------------------------------------------------------
@router.post(
    "/datasets/{name}/synthetic-releases",
    response_model=SyntheticReleasePublic,
    status_code=202,
    responses={200: {"model": SyntheticReleasePublic,
                     "description": "a repeated request: the finished release"}},
)  # fmt: skip
def create_release(
    name: DatasetName,
    body: SyntheticReleaseCreate,
    request: Request,
    response: Response,
    engine: EngineDep,
    who: PrincipalDep,
):
    """Release a DP synthetic copy of a table (202 + ``Location``; poll the status URL)."""
    import importlib.util

    for module in ("pandas", "opacus") if body.method == "lm" else ("pandas",):
        if importlib.util.find_spec(module) is None:
            raise UnsupportedError(
                f"DP releases need {module!r} on the server: pip install 'assay[privacy]'"
            )
    from assay.generative.tabular.schema import RowCodec, TableSchema
    from assay.generative.tabular.train import TrainConfig
    from assay.platform.errors import PrivacyBudgetExceededError

    project = who.write_project
    releases = _Releases(request, project, name)
    df, data_sha = _read_table(body, releases)
    fingerprint = _fingerprint(body, data_sha)
    release_id = body.release_id or uuid.uuid4().hex

    def existing(rec: dict[str, Any]) -> SyntheticReleasePublic:
        if rec["fingerprint"] != fingerprint:
            raise ConflictError(
                f"release {release_id!r} of dataset {name!r} exists with a different request; "
                "use a new release_id",
                field="release_id",
                details={"dataset": name, "release_id": release_id},
            )
        response.status_code = 202 if rec["status"] == "running" else 200
        response.headers["Location"] = releases.public(rec).status_url
        return releases.public(rec)

    rec = releases.record(release_id)
    if rec is not None:
        return existing(rec)

    ledger = engine.store.privacy_ledger(project)
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
    if any(c.release_id == release_id for c in ledger.charges(name)):
        raise ConflictError(
            f"dataset {name!r}: release id {release_id!r} was already charged (e.g. by "
            "`assay synth release`); use a new release_id",
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

    folder = releases.root / release_id
    folder.mkdir(parents=True, exist_ok=True)
    rec = {
        "release_id": release_id, "dataset": name, "project": project, "status": "running",
        "method": body.method, "epsilon": body.epsilon, "delta": body.delta,
        "rows_in": len(df), "hyperparameters": hyper, "created_at": _now(),
        "finished_at": None, "fingerprint": fingerprint, "pid": os.getpid(),
        "host": socket.gethostname(), "report": None, "error": None,
    }  # fmt: skip
    with _ACTIVE_LOCK:
        _ACTIVE.add(str(folder))
    if not _write_json(folder / "release.json", rec, exclusive=True):  # a concurrent twin
        with _ACTIVE_LOCK:
            _ACTIVE.discard(str(folder))
        return existing(releases.record(release_id) or rec)
    kwargs = dict(
        schema=schema, table=df, epsilon=body.epsilon, delta=body.delta, method=body.method,
        n_rows=body.rows, config=config, ledger=ledger, dataset=name, release_id=release_id,
        seed=body.seed,
    )  # fmt: skip
    threading.Thread(
        target=_train_and_write, args=(folder, rec, kwargs, schema.names),
        name=f"assay-release-{release_id}", daemon=True,
    ).start()  # fmt: skip
    out = releases.public(rec)
    response.headers["Location"] = out.status_url
    return out


@router.get("/datasets/{name}/synthetic-releases", response_model=SyntheticReleaseList)
def list_releases(name: DatasetName, request: Request, who: PrincipalDep):
    """This dataset's releases on this server, newest first."""
    releases = _Releases(request, who.write_project, name)
    recs = []
    if releases.root.is_dir():
        for folder in releases.root.iterdir():
            rec = releases.record(folder.name)
            if rec is not None:
                recs.append(rec)
    recs.sort(key=lambda r: r["created_at"], reverse=True)
    return SyntheticReleaseList(releases=[releases.public(r) for r in recs])


def _record_or_404(releases: _Releases, release_id: str) -> dict[str, Any]:
    rec = releases.record(release_id)
    if rec is None:
        raise NotFoundError(
            f"dataset {releases.dataset!r} has no release {release_id!r}",
            details={"dataset": releases.dataset, "release_id": release_id},
        )
    return rec


@router.get(
    "/datasets/{name}/synthetic-releases/{release_id}", response_model=SyntheticReleasePublic
)
def get_release(name: DatasetName, release_id: ReleaseId, request: Request, who: PrincipalDep):
    """A release's status; once ``succeeded``, its privacy report and ``table_url``."""
    releases = _Releases(request, who.write_project, name)
    return releases.public(_record_or_404(releases, release_id))


@router.get(
    "/datasets/{name}/synthetic-releases/{release_id}/table",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the synthetic table (CSV)"}},
)
def get_release_table(
    name: DatasetName, release_id: ReleaseId, request: Request, who: PrincipalDep
):
    """The synthetic table as CSV (409 while the release is running or if it failed)."""
    releases = _Releases(request, who.write_project, name)
    rec = _record_or_404(releases, release_id)
    if rec["status"] != "succeeded":
        raise ConflictError(
            f"release {release_id!r} has no table: it is {rec['status']}",
            details={"dataset": name, "release_id": release_id, "status": rec["status"]},
        )
    return FileResponse(
        releases.root / release_id / "synthetic.csv",
        media_type="text/csv",
        filename=f"{name}-{release_id}.csv",
    )
