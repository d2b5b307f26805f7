"""Table schemas and the row <-> token codec of the DP tabular language model.

Sablayrolles, Wang & Karrer, "Privately generating tabular data using language models"
(arXiv 2306.04803) treat each row of a table as a short sentence: every column becomes one
token from a range of the vocabulary reserved for that column, numeric columns are quantised
into bins and categorical columns keep a capped list of values plus an "unknown" token. A
small GPT trained with DP-SGD on these sentences is then sampled to produce synthetic rows.

Everything here is decided by the *schema*, which is public: numeric bin edges come from the
declared ``[lower, upper]`` range (never from the private data, which would leak it), and
categorical vocabularies are the declared values. A row is laid out as::

    BOS  <field:col_1> <value of col_1>  <field:col_2> <value of col_2>  ...  EOS

Field tokens are deterministic markers (one per column) that tell the model which column comes
next; the value token of column ``j`` always lies in column ``j``'s own token range, so
constrained decoding (only the current column's tokens are allowed) can never produce an
invalid row.

Round trip. For an in-schema row, ``decode(encode(row)) == canonical(row)`` exactly, where the
canonical form keeps categorical values and exactly-represented integers as they are and maps
a binned numeric value to its bin's representative; ``encode(decode(tokens)) == tokens`` for
every valid token sequence. A numeric column is exact (one token per integer) when it is
declared ``integer`` and ``upper - lower + 1 <= bins``.

Example:
    >>> schema = TableSchema.from_dict({"columns": [
    ...     {"name": "arm", "type": "categorical", "values": ["control", "treatment"]},
    ...     {"name": "clicks", "type": "numeric", "lower": 0, "upper": 9, "integer": True,
    ...      "bins": 10}]})
    >>> codec = RowCodec(schema)
    >>> tokens = codec.encode([{"arm": "treatment", "clicks": 3}])
    >>> codec.decode(tokens)
    [{'arm': 'treatment', 'clicks': 3}]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from assay.platform.errors import ValidationError

UNK = "<unk>"
PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
#: Upper limit on the number of tokens one column may use (keeps the vocabulary small).
MAX_COLUMN_TOKENS = 4096


def _bad(message: str, column: str | None = None, **details: Any) -> ValidationError:
    where = f"columns.{column}" if column is not None else "columns"
    return ValidationError(message, field=where, details=details or None)


@dataclass(frozen=True)
class NumericColumn:
    """A numeric column binned on its declared public range.

    Args:
        name: Column name.
        lower: Smallest value (public, declared; values below are clipped to it).
        upper: Largest value (public; values above are clipped to it).
        bins: Number of bins. For ``integer`` columns with ``upper - lower + 1 <= bins`` every
            integer gets its own token (exact representation).
        scale: ``"linear"`` (equal-width bins) or ``"log"`` (equal width in
            ``log1p(x - lower)``; for heavy-tailed counts and revenue).
        integer: Values are integers (decoded values are rounded).
    """

    name: str
    lower: float
    upper: float
    bins: int = 16
    scale: str = "linear"
    integer: bool = False
    kind: str = field(default="numeric", init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise _bad(f"column {self.name!r}: lower/upper must be finite", self.name)
        if not self.lower < self.upper:
            raise _bad(
                f"column {self.name!r}: lower {self.lower!r} must be < upper {self.upper!r}",
                self.name,
            )
        if not isinstance(self.bins, int) or isinstance(self.bins, bool) or self.bins < 1:
            raise _bad(f"column {self.name!r}: bins must be a positive integer", self.name)
        if self.bins > MAX_COLUMN_TOKENS:
            raise _bad(f"column {self.name!r}: at most {MAX_COLUMN_TOKENS} bins", self.name)
        if self.scale not in ("linear", "log"):
            raise _bad(f"column {self.name!r}: scale must be 'linear' or 'log'", self.name)
        if self.integer and (self.lower != int(self.lower) or self.upper != int(self.upper)):
            raise _bad(f"column {self.name!r}: integer columns need integer bounds", self.name)

    @cached_property
    def _int_edges(self) -> np.ndarray:
        # integer columns: half-open integer intervals [e_i, e_{i+1}); a value goes to the same
        # bin as under continuous binning, and bins holding no integer are dropped
        cut = np.ceil(self._cont_edges()[1:-1] - 1e-9)
        return np.unique(np.concatenate([[self.lower], cut, [self.upper + 1]])).astype(np.int64)

    @property
    def exact(self) -> bool:
        """Whether every in-range value has its own token (integers with enough bins)."""
        return self.integer and self.size == int(self.upper - self.lower + 1)

    @property
    def size(self) -> int:
        """Number of tokens this column uses (``<= bins``)."""
        return len(self._int_edges) - 1 if self.integer else self.bins

    @property
    def diameter(self) -> float:
        """``upper - lower``: the public range used by the reconstruction bound."""
        return float(self.upper - self.lower)

    def _fwd(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(x - self.lower) if self.scale == "log" else x

    def _inv(self, u: np.ndarray) -> np.ndarray:
        return np.expm1(u) + self.lower if self.scale == "log" else u

    def _cont_edges(self) -> np.ndarray:
        lo, hi = self._fwd(np.array([self.lower, self.upper], dtype=float))
        return self._inv(np.linspace(lo, hi, self.bins + 1))

    def edges(self) -> np.ndarray:
        """Bin edges (``size + 1`` values) in the column's units. For integer columns bin ``i``
        holds the integers in ``[edges[i], edges[i + 1])``."""
        return self._int_edges.astype(float) if self.integer else self._cont_edges()

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Values -> local codes in ``[0, size)``; out-of-range values are clipped."""
        try:
            x = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise _bad(f"column {self.name!r}: values must be numbers", self.name) from None
        if np.isnan(x).any():
            raise _bad(f"column {self.name!r}: missing/NaN values are not allowed", self.name)
        x = np.clip(x, self.lower, self.upper)
        if self.integer:
            x = np.floor(x + 0.5)  # round half up, then locate the integer's bin
            return np.searchsorted(self._int_edges, x, side="right").astype(np.int64) - 1
        lo, hi = self._fwd(np.array([self.lower, self.upper], dtype=float))
        u = (self._fwd(x) - lo) / (hi - lo)
        return np.minimum((u * self.bins).astype(np.int64), self.bins - 1)

    def decode(self, codes: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Local codes -> values: the bin's representative (integers: the lower middle integer
        of the bin; floats: the midpoint in the scaled space), or a uniform draw inside the bin
        when ``rng`` is given (for synthetic data). Always re-encodes to the same code."""
        c = np.asarray(codes, dtype=np.int64)
        if self.integer:
            a, b = self._int_edges[c], self._int_edges[c + 1]  # integers a .. b-1
            if rng is None:
                return (a + (b - 1 - a) // 2).astype(np.int64)
            return rng.integers(a, b).astype(np.int64)
        lo, hi = self._fwd(np.array([self.lower, self.upper], dtype=float))
        width = (hi - lo) / self.bins
        offset = 0.5 if rng is None else rng.uniform(0.02, 0.98, c.shape)
        return np.clip(self._inv(lo + (c + offset) * width), self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "numeric",
            "lower": self.lower,
            "upper": self.upper,
            "bins": self.bins,
            "scale": self.scale,
            "integer": self.integer,
        }


@dataclass(frozen=True)
class CategoricalColumn:
    """A categorical column with a declared (public) list of values plus an UNK token.

    Values are compared as strings (``"1"`` and ``1`` are the same category). A value that is
    not declared maps to :data:`UNK`, so the vocabulary never depends on the private data.

    Args:
        name: Column name.
        values: The declared values, most important first (cap them to the top values).
        unk: Keep an UNK token for undeclared values (default). With ``unk=False`` an
            undeclared value is an error.
    """

    name: str
    values: tuple[str, ...]
    unk: bool = True
    kind: str = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        vals = tuple(str(v) for v in self.values)
        object.__setattr__(self, "values", vals)
        if not vals:
            raise _bad(f"column {self.name!r}: declare at least one value", self.name)
        if len(set(vals)) != len(vals):
            raise _bad(f"column {self.name!r}: values must be distinct", self.name)
        if UNK in vals:
            raise _bad(f"column {self.name!r}: {UNK!r} is reserved", self.name)
        if len(vals) + 1 > MAX_COLUMN_TOKENS:
            raise _bad(f"column {self.name!r}: at most {MAX_COLUMN_TOKENS - 1} values", self.name)

    @property
    def size(self) -> int:
        return len(self.values) + (1 if self.unk else 0)

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.values, UNK) if self.unk else self.values

    def encode(self, values: np.ndarray) -> np.ndarray:
        index = {v: i for i, v in enumerate(self.values)}
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            code = index.get(str(v))
            if code is None:
                if not self.unk:
                    raise _bad(
                        f"column {self.name!r}: value {v!r} is not declared", self.name, value=v
                    )
                code = len(self.values)
            out[i] = code
        return out

    def decode(self, codes: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        labels = np.array(self.labels, dtype=object)
        return labels[np.asarray(codes, dtype=np.int64)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "categorical",
            "values": list(self.values),
            "unk": self.unk,
        }


Column = NumericColumn | CategoricalColumn


class TableSchema:
    """An ordered list of columns: the public description of a table.

    JSON form (what ``assay synth --schema`` reads)::

        {"columns": [
          {"name": "arm", "type": "categorical", "values": ["control", "treatment"]},
          {"name": "revenue", "type": "numeric", "lower": 0, "upper": 5000,
           "bins": 24, "scale": "log"}]}
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        if not columns:
            raise _bad("a schema needs at least one column")
        names = [c.name for c in columns]
        for n in names:
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise _bad(f"column name {n!r} must be an identifier", str(n))
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _bad(f"duplicate column names {dup}", dup[0])
        self.columns: tuple[Column, ...] = tuple(columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def sizes(self) -> list[int]:
        """Number of tokens (categories or bins) of each column."""
        return [c.size for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise _bad(f"unknown column {name!r}; the schema has {self.names}", name)

    def index(self, name: str) -> int:
        return self.names.index(self.column(name).name)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableSchema:
        if not isinstance(d, Mapping) or not isinstance(d.get("columns"), list):
            raise _bad('a schema is an object {"columns": [...]}')
        cols: list[Column] = []
        for i, spec in enumerate(d["columns"]):
            if not isinstance(spec, Mapping):
                raise ValidationError(f"columns[{i}] must be an object", field=f"columns[{i}]")
            kind, name = spec.get("type"), spec.get("name")
            try:
                if kind == "numeric":
                    extra = set(spec) - {
                        "name",
                        "type",
                        "lower",
                        "upper",
                        "bins",
                        "scale",
                        "integer",
                    }
                    if extra:
                        raise _bad(f"column {name!r}: unknown field(s) {sorted(extra)}", name)
                    for key in ("lower", "upper"):
                        v = spec.get(key)
                        if isinstance(v, bool) or not isinstance(v, int | float):
                            raise _bad(f"column {name!r}: {key} must be a number, got {v!r}", name)
                    cols.append(
                        NumericColumn(
                            name,
                            float(spec["lower"]),
                            float(spec["upper"]),
                            spec.get("bins", 16),
                            spec.get("scale", "linear"),
                            bool(spec.get("integer", False)),
                        )
                    )
                elif kind == "categorical":
                    extra = set(spec) - {"name", "type", "values", "unk"}
                    if extra:
                        raise _bad(f"column {name!r}: unknown field(s) {sorted(extra)}", name)
                    values = spec.get("values")
                    if not isinstance(values, list):
                        raise _bad(f"column {name!r}: values must be a list", name)
                    cols.append(CategoricalColumn(name, tuple(values), bool(spec.get("unk", True))))
                else:
                    raise ValidationError(
                        f"columns[{i}] ({name!r}): type must be 'numeric' or 'categorical', "
                        f"got {kind!r}",
                        field=f"columns[{i}].type",
                    )
            except TypeError as e:  # e.g. a missing required key reached the dataclass
                raise ValidationError(f"columns[{i}] ({name!r}): {e}", field=f"columns[{i}]") from e
        return cls(cols)

    def __repr__(self) -> str:
        return f"TableSchema({self.names})"


def table_columns(table: Any, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Columnar view of a table: a mapping of columns (dict, pandas DataFrame) or a list of row
    dicts. Raises ``ValidationError`` naming the first missing column."""
    names = list(names)
    if isinstance(table, Sequence) and not isinstance(table, str | bytes):
        rows = list(table)
        for i, r in enumerate(rows):
            missing = [n for n in names if n not in r]
            if missing:
                raise _bad(f"row {i} is missing column {missing[0]!r}", missing[0])
        return {n: np.array([r[n] for r in rows], dtype=object) for n in names}
    out = {}
    for n in names:
        try:
            col = table[n]
        except (KeyError, IndexError):
            raise _bad(f"the table has no column {n!r}", n) from None
        out[n] = np.asarray(col.to_numpy() if hasattr(col, "to_numpy") else col, dtype=object)
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise _bad("columns have different lengths")
    return out


class RowCodec:
    """Serialises rows of a :class:`TableSchema` into fixed-layout token sequences.

    Vocabulary: ``PAD=0, BOS=1, EOS=2``, then one field token per column, then each column's
    value tokens in its own contiguous range ``[offsets[j], offsets[j] + sizes[j])``. A row is
    ``seq_len = 2 k + 2`` tokens for ``k`` columns; value tokens sit at positions
    ``value_positions = [2, 4, ..., 2k]``.

    Args:
        schema: The public schema.
    """

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        k = len(schema.columns)
        self.n_columns = k
        self.field_tokens = [N_SPECIAL + j for j in range(k)]
        offsets, o = [], N_SPECIAL + k
        for c in schema.columns:
            offsets.append(o)
            o += c.size
        self.offsets = offsets
        self.sizes = schema.sizes
        self.vocab_size = o
        self.seq_len = 2 * k + 2
        self.value_positions = [2 + 2 * j for j in range(k)]
        # allowed[t, v]: may token v appear at position t (position 0 is BOS)
        allowed = torch.zeros(self.seq_len, self.vocab_size, dtype=torch.bool)
        allowed[0, BOS] = True
        for j in range(k):
            allowed[1 + 2 * j, self.field_tokens[j]] = True
            allowed[2 + 2 * j, offsets[j] : offsets[j] + self.sizes[j]] = True
        allowed[-1, EOS] = True
        self.allowed = allowed

    # -- codes: one local integer per column --------------------------------------------------
    def to_codes(self, table: Any) -> np.ndarray:
        """A table -> ``n x k`` int64 array of per-column local codes."""
        cols = table_columns(table, self.schema.names)
        return np.stack([c.encode(cols[c.name]) for c in self.schema.columns], axis=1)

    def from_codes(self, codes: np.ndarray, rng: np.random.Generator | None = None) -> list[dict]:
        """``n x k`` local codes -> row dicts (numeric bins at midpoints unless ``rng``)."""
        codes = np.asarray(codes, dtype=np.int64)
        self.check_codes(codes)
        cols = [c.decode(codes[:, j], rng) for j, c in enumerate(self.schema.columns)]
        names = self.schema.names
        return [{n: _py(cols[j][i]) for j, n in enumerate(names)} for i in range(codes.shape[0])]

    def check_codes(self, codes: np.ndarray) -> None:
        if codes.ndim != 2 or codes.shape[1] != self.n_columns:
            raise ValidationError(f"codes must be n x {self.n_columns}, got {codes.shape}")
        bad = (codes < 0) | (codes >= np.asarray(self.sizes))
        if bad.any():
            j = int(np.argwhere(bad)[0][1])
            raise _bad(
                f"code out of range for column {self.schema.names[j]!r}", self.schema.names[j]
            )

    # -- tokens -------------------------------------------------------------------------------
    def codes_to_tokens(self, codes: np.ndarray) -> Tensor:
        """``n x k`` local codes -> ``n x seq_len`` LongTensor of tokens."""
        codes = np.asarray(codes, dtype=np.int64)
        self.check_codes(codes)
        n = codes.shape[0]
        tokens = torch.empty(n, self.seq_len, dtype=torch.long)
        tokens[:, 0] = BOS
        tokens[:, -1] = EOS
        for j in range(self.n_columns):
            tokens[:, 1 + 2 * j] = self.field_tokens[j]
            tokens[:, 2 + 2 * j] = torch.from_numpy(codes[:, j] + self.offsets[j])
        return tokens

    def tokens_to_codes(self, tokens: Tensor) -> np.ndarray:
        """``n x seq_len`` tokens -> ``n x k`` local codes. Raises if any token is not allowed
        at its position (so an invalid sequence can never decode to a row)."""
        if tokens.ndim != 2 or tokens.shape[1] != self.seq_len:
            raise ValidationError(f"tokens must be n x {self.seq_len}, got {tuple(tokens.shape)}")
        t = tokens.long().cpu()
        ok = self.allowed[torch.arange(self.seq_len).expand_as(t), t.clamp(0, self.vocab_size - 1)]
        ok &= (t >= 0) & (t < self.vocab_size)
        if not bool(ok.all()):
            pos = int(torch.nonzero(~ok)[0][1])
            raise ValidationError(f"token not allowed at position {pos}", field="tokens")
        vals = t[:, self.value_positions].numpy()
        return vals - np.asarray(self.offsets)

    def encode(self, table: Any) -> Tensor:
        """A table (row dicts, dict of columns, DataFrame) -> ``n x seq_len`` tokens."""
        return self.codes_to_tokens(self.to_codes(table))

    def decode(self, tokens: Tensor, rng: np.random.Generator | None = None) -> list[dict]:
        """``n x seq_len`` tokens -> row dicts."""
        return self.from_codes(self.tokens_to_codes(tokens), rng)

    def canonical(self, table: Any) -> list[dict]:
        """The rows as the codec represents them (bins at their representatives)."""
        return self.from_codes(self.to_codes(table))


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
