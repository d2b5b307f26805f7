"""Bodies of the private-data API: a dataset's privacy budget with its charges, and DP
synthetic releases (the request, a release's status record, the list).

May import pydantic and the sibling schema modules (``ErrorBody``); no FastAPI, nothing of
:mod:`assay.generative` (the release's schema dict and hyperparameters are checked by the
release service, not here).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assay.service.schemas.errors import ErrorBody

#: A dataset name or release id: also a folder name of the release store, so path-safe.
SAFE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
#: The largest inline CSV a release request may carry.
MAX_CSV_CHARS = 50_000_000


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
    table_schema: dict[str, Any] = Field(alias="schema", max_length=500)
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
    release_id: str | None = Field(None, pattern=f"^{SAFE_NAME}$", max_length=200)

    @field_validator("csv", "table")
    @classmethod
    def _storable_text(cls, value: str | None) -> str | None:
        # Lone UTF-16 surrogates cannot be encoded (to bytes, a path or the database) and a NUL
        # cannot be in a path: refuse them here, as a 422 naming the field, not later as a 500.
        if value is None:
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from e
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

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
    total: int | None = None
    offset: int = 0
    limit: int | None = None
