"""Search spaces: parameter definitions, linear parameter constraints, and the encodings
between user-facing parameter values and the tensors the models and optimizers see.

Three representations of one point:

* **raw** – a ``dict`` of user values (``{"lr": 3e-4, "layers": 4, "opt": "adam"}``).
* **model space** – a ``d``-dim tensor in the unit cube that the GP is fitted on: floats and
  integers are mapped affinely (after a ``log`` for log-scaled parameters) to ``[0, 1]``,
  ordered choices to evenly spaced grid points ``i / (k - 1)``, unordered choices to a one-hot
  block of ``k`` columns; fixed parameters are dropped. Because the encoding already targets
  the unit cube, the models need no learned input normalisation.
* **compact space** – one column per tunable parameter: identical to model space except that an
  unordered choice is a single categorical column holding the category index. This is the space
  the mixed (integer / categorical) acquisition optimizer searches; a point is expanded to model
  space before the acquisition function sees it.

Example:
    >>> space = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Int("layers", 1, 8),
    ...                      Choice("opt", ["adam", "sgd"])])
    >>> x = space.encode({"lr": 1e-3, "layers": 4, "opt": "sgd"})
    >>> space.decode(x.unsqueeze(0))[0]["opt"]
    'sgd'
"""

from __future__ import annotations

import ast
import copy
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from assay.platform.errors import ConstraintParseError, SearchSpaceError

DTYPE = torch.double
ParameterValue = float | int | str | bool
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
#: An integer parameter with more values than this is optimized by continuous relaxation.
MAX_DISCRETE_GRID = 10_000
#: Constraint feasibility tolerance, relative to the constraint's scale.
CONSTRAINT_TOL = 1e-7


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SearchSpaceError(
            f"{where}: parameter name {name!r} must be an identifier (letters, digits, '_', '.')",
            field=f"{where}.name",
        )
    return name


class Parameter:
    """Base class of the parameter types. Subclasses are frozen dataclasses."""

    name: str
    kind: ClassVar[str]

    @property
    def is_tunable(self) -> bool:
        return True

    @property
    def n_model_columns(self) -> int:
        return 1

    def validate(self, value: Any) -> ParameterValue:
        """Return the canonical form of ``value`` or raise :class:`SearchSpaceError`."""
        raise NotImplementedError

    def from_unit(self, u: float) -> ParameterValue:
        """Map ``u ~ U[0, 1]`` to a value so that uniform ``u`` gives a uniform design."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _error(self, message: str, value: Any = None) -> SearchSpaceError:
        return SearchSpaceError(
            f"parameter {self.name!r}: {message}",
            field=f"parameters.{self.name}",
            details={"parameter": self.name, "value": value} if value is not None else None,
        )


@dataclass(frozen=True)
class _RangeParameter(Parameter):
    name: str
    lower: float
    upper: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, f"parameter {self.name!r}")
        for bound in (self.lower, self.upper):
            if not _is_number(bound) or not math.isfinite(bound):
                raise self._error(f"bounds must be finite numbers, got {bound!r}")
        if not self.lower < self.upper:
            raise self._error(
                f"bounds are empty: lower {self.lower!r} must be < upper {self.upper!r}"
            )
        if self.log and self.lower <= 0:
            raise self._error(f"log scale needs positive bounds, got lower={self.lower!r}")

    def _to_unit(self, x: float) -> float:
        if self.log:
            lo, hi = math.log(self.lower), math.log(self.upper)
            return (math.log(x) - lo) / (hi - lo)
        return (x - self.lower) / (self.upper - self.lower)

    def _from_unit_continuous(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            lo, hi = math.log(self.lower), math.log(self.upper)
            x = math.exp(lo + u * (hi - lo))
        else:
            x = self.lower + u * (self.upper - self.lower)
        return min(max(x, float(self.lower)), float(self.upper))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "bounds": [self.lower, self.upper],
            "log": self.log,
        }


@dataclass(frozen=True)
class FloatParameter(_RangeParameter):
    """A real parameter on ``[lower, upper]``, linear or log scale."""

    kind: ClassVar[str] = "float"

    def validate(self, value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise self._error(f"expected a finite number, got {value!r}", value)
        value = float(value)
        span = self.upper - self.lower
        if value < self.lower - 1e-12 * span or value > self.upper + 1e-12 * span:
            raise self._error(f"{value!r} is outside [{self.lower}, {self.upper}]", value)
        return min(max(value, float(self.lower)), float(self.upper))

    def from_unit(self, u: float) -> float:
        return self._from_unit_continuous(u)

    def encode(self, value: float) -> float:
        return self._to_unit(value)

    def decode(self, u: float) -> float:
        return self._from_unit_continuous(u)


@dataclass(frozen=True)
class IntParameter(_RangeParameter):
    """An integer parameter on ``[lower, upper]`` (inclusive), linear or log scale."""

    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        for bound in (self.lower, self.upper):
            if _is_number(bound) and float(bound) != int(bound):
                raise self._error(f"integer bounds must be whole numbers, got {bound!r}")
        super().__post_init__()
        object.__setattr__(self, "lower", int(self.lower))
        object.__setattr__(self, "upper", int(self.upper))

    def validate(self, value: Any) -> int:
        if not _is_number(value) or not math.isfinite(value) or float(value) != int(value):
            raise self._error(f"expected an integer, got {value!r}", value)
        value = int(value)
        if not self.lower <= value <= self.upper:
            raise self._error(f"{value!r} is outside [{self.lower}, {self.upper}]", value)
        return value

    def from_unit(self, u: float) -> int:
        if self.log:
            return self.decode(u)
        n = self.upper - self.lower + 1
        return int(self.lower + min(int(u * n), n - 1))

    def encode(self, value: int) -> float:
        return self._to_unit(value)

    def decode(self, u: float) -> int:
        return int(min(max(round(self._from_unit_continuous(u)), self.lower), self.upper))

    def grid(self) -> list[float] | None:
        """Model-space values of every integer, or ``None`` when there are too many."""
        if self.upper - self.lower + 1 > MAX_DISCRETE_GRID:
            return None
        return [self.encode(v) for v in range(self.lower, self.upper + 1)]


@dataclass(frozen=True)
class ChoiceParameter(Parameter):
    """A parameter taking one of ``values``.

    ``ordered`` choices are encoded on a grid (neighbours are similar); unordered choices as a
    one-hot block. By default numeric choices are ordered (and sorted), others unordered.
    """

    name: str
    values: tuple[ParameterValue, ...]
    ordered: bool | None = None
    kind: ClassVar[str] = "choice"

    def __post_init__(self) -> None:
        _check_name(self.name, f"parameter {self.name!r}")
        if isinstance(self.values, str | bytes) or not isinstance(self.values, Iterable):
            raise self._error("values must be a list")
        values = tuple(self.values)
        if not values:
            raise self._error("values must not be empty")
        for v in values:
            if not isinstance(v, str | int | float | bool) or (
                isinstance(v, float) and not math.isfinite(v)
            ):
                raise self._error(f"values must be strings, numbers or booleans, got {v!r}")
        if len({(type(v) is bool, v) for v in values}) != len(values):
            raise self._error(f"values contain duplicates: {list(values)!r}")
        ordered = self.ordered
        if ordered is None:
            ordered = all(_is_number(v) for v in values)
            if ordered:
                values = tuple(sorted(values))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "ordered", bool(ordered))

    @property
    def is_tunable(self) -> bool:
        return len(self.values) > 1

    @property
    def is_one_hot(self) -> bool:
        return not self.ordered and len(self.values) > 1

    @property
    def n_model_columns(self) -> int:
        return len(self.values) if self.is_one_hot else 1

    def index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if (type(v) is bool) == (type(value) is bool) and v == value:
                return i
        raise self._error(f"{value!r} is not one of {list(self.values)!r}", value)

    def validate(self, value: Any) -> ParameterValue:
        return self.values[self.index(value)]

    def from_unit(self, u: float) -> ParameterValue:
        k = len(self.values)
        return self.values[min(int(u * k), k - 1)]

    def grid(self) -> list[float]:
        k = len(self.values)
        return [i / (k - 1) for i in range(k)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "choice",
            "values": list(self.values),
            "ordered": self.ordered,
        }


@dataclass(frozen=True)
class FixedParameter(Parameter):
    """A parameter held at one value (kept in every arm, never modelled)."""

    name: str
    value: ParameterValue
    kind: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        _check_name(self.name, f"parameter {self.name!r}")
        if not isinstance(self.value, str | int | float | bool):
            raise self._error(f"value must be a string, number or boolean, got {self.value!r}")

    @property
    def is_tunable(self) -> bool:
        return False

    def validate(self, value: Any) -> ParameterValue:
        if value != self.value or (type(value) is bool) != (type(self.value) is bool):
            raise self._error(f"is fixed at {self.value!r}, got {value!r}", value)
        return self.value

    def from_unit(self, u: float) -> ParameterValue:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": "fixed", "value": self.value}


# Short typed helpers, the same objects the dict form builds.
def Float(name: str, lower: float, upper: float, *, log: bool = False) -> FloatParameter:
    """``Float("lr", 1e-5, 1e-1, log=True)``."""
    return FloatParameter(name, lower, upper, log)


def Int(name: str, lower: int, upper: int, *, log: bool = False) -> IntParameter:
    """``Int("layers", 1, 8)``."""
    return IntParameter(name, lower, upper, log)


def Choice(
    name: str, values: Sequence[ParameterValue], *, ordered: bool | None = None
) -> ChoiceParameter:
    """``Choice("opt", ["adam", "sgd"])``."""
    return ChoiceParameter(name, tuple(values), ordered)


def Fixed(name: str, value: ParameterValue) -> FixedParameter:
    """``Fixed("epochs", 10)``."""
    return FixedParameter(name, value)


_PARAMETER_KEYS = {
    "float": {"name", "type", "bounds", "log"},
    "int": {"name", "type", "bounds", "log"},
    "choice": {"name", "type", "values", "ordered"},
    "fixed": {"name", "type", "value"},
}


def parameter_from_dict(spec: Mapping[str, Any] | Parameter, index: int = 0) -> Parameter:
    """Build a parameter from its JSON form (the same form the REST API accepts).

    ``{"name": "lr", "type": "float", "bounds": [1e-5, 1e-1], "log": true}``,
    ``{"name": "opt", "type": "choice", "values": ["adam", "sgd"]}``,
    ``{"name": "seed", "type": "fixed", "value": 0}``.
    """
    if isinstance(spec, Parameter):
        return spec
    where = f"parameters[{index}]"
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"{where}: expected an object, got {spec!r}", field=where)
    name = spec.get("name")
    label = f"{where} ({name!r})" if name is not None else where
    kind = spec.get("type")
    if kind not in _PARAMETER_KEYS:
        raise SearchSpaceError(
            f"{label}: type must be one of {sorted(_PARAMETER_KEYS)}, got {kind!r}",
            field=f"{where}.type",
        )
    unknown = set(spec) - _PARAMETER_KEYS[kind]
    if unknown:
        raise SearchSpaceError(
            f"{label}: unknown field(s) {sorted(unknown)} for a {kind} parameter",
            field=f"{where}.{sorted(unknown)[0]}",
        )
    _check_name(name, label)
    try:
        if kind in ("float", "int"):
            bounds = spec.get("bounds")
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise SearchSpaceError(
                    f"{label}: bounds must be [lower, upper], got {bounds!r}",
                    field=f"{where}.bounds",
                )
            cls = FloatParameter if kind == "float" else IntParameter
            return cls(name, bounds[0], bounds[1], bool(spec.get("log", False)))
        if kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list | tuple):
                raise SearchSpaceError(
                    f"{label}: values must be a list, got {values!r}", field=f"{where}.values"
                )
            return ChoiceParameter(name, tuple(values), spec.get("ordered"))
        if "value" not in spec:
            raise SearchSpaceError(f"{label}: a fixed parameter needs a value", field=where)
        return FixedParameter(name, spec["value"])
    except SearchSpaceError as e:
        if e.field and e.field.startswith("parameters."):
            e.field = f"{where}.bounds" if "bound" in e.message else where
            e.details["field"] = e.field
        raise


# ---------------------------------------------------------------------------------------------
# Linear parameter constraints
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearConstraint:
    """``sum_i coefficients[i] * x_i <= bound`` over raw (user-scale) parameter values."""

    coefficients: dict[str, float]
    bound: float
    expression: str

    def slack(self, params: Mapping[str, Any]) -> float:
        """``bound - a·x``: non-negative when satisfied."""
        return self.bound - sum(c * float(params[n]) for n, c in self.coefficients.items())

    def is_satisfied(self, params: Mapping[str, Any]) -> bool:
        scale = max(1.0, abs(self.bound), *(abs(c) for c in self.coefficients.values()))
        return self.slack(params) >= -CONSTRAINT_TOL * scale


def _linear_terms(node: ast.AST, expr: str) -> tuple[dict[str, float], float]:
    """Reduce an expression AST to ``({name: coef}, constant)`` or raise if not linear."""

    def fail(why: str) -> ConstraintParseError:
        return ConstraintParseError(
            f"parameter constraint {expr!r}: {why}", field="parameter_constraints"
        )

    if isinstance(node, ast.Constant) and _is_number(node.value):
        return {}, float(node.value)
    if isinstance(node, ast.Name):
        return {node.id: 1.0}, 0.0
    if isinstance(node, ast.Attribute):  # dotted names like "model.lr"
        return {ast.unparse(node): 1.0}, 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        terms, const = _linear_terms(node.operand, expr)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return {k: sign * v for k, v in terms.items()}, sign * const
    if isinstance(node, ast.BinOp):
        lt, lc = _linear_terms(node.left, expr)
        rt, rc = _linear_terms(node.right, expr)
        if isinstance(node.op, ast.Add | ast.Sub):
            sign = 1.0 if isinstance(node.op, ast.Add) else -1.0
            terms = dict(lt)
            for k, v in rt.items():
                terms[k] = terms.get(k, 0.0) + sign * v
            return terms, lc + sign * rc
        if isinstance(node.op, ast.Mult):
            if lt and rt:
                raise fail("products of parameters are not linear")
            scale, (terms, const) = (lc, (rt, rc)) if not lt else (rc, (lt, lc))
            return {k: scale * v for k, v in terms.items()}, scale * const
        if isinstance(node.op, ast.Div):
            if rt:
                raise fail("dividing by a parameter is not linear")
            if rc == 0:
                raise fail("division by zero")
            return {k: v / rc for k, v in lt.items()}, lc / rc
    raise fail(f"unsupported term {ast.unparse(node)!r} (use + - * / and numbers)")


def parse_parameter_constraint(expression: str) -> LinearConstraint:
    """Parse ``"x1 + 2*x2 <= 1.5"`` (or ``>=``) into a :class:`LinearConstraint`."""
    if not isinstance(expression, str):
        raise ConstraintParseError(
            f"parameter constraint must be a string, got {expression!r}",
            field="parameter_constraints",
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as e:
        raise ConstraintParseError(
            f"parameter constraint {expression!r} is not a valid expression: {e.msg}",
            field="parameter_constraints",
        ) from None
    if not (
        isinstance(tree, ast.Compare)
        and len(tree.ops) == 1
        and isinstance(tree.ops[0], ast.LtE | ast.GtE)
    ):
        raise ConstraintParseError(
            f"parameter constraint {expression!r} must be 'lhs <= rhs' or 'lhs >= rhs'",
            field="parameter_constraints",
        )
    lt, lc = _linear_terms(tree.left, expression)
    rt, rc = _linear_terms(tree.comparators[0], expression)
    terms = dict(lt)
    for k, v in rt.items():
        terms[k] = terms.get(k, 0.0) - v
    bound = rc - lc
    if isinstance(tree.ops[0], ast.GtE):
        terms = {k: -v for k, v in terms.items()}
        bound = -bound
    terms = {k: v for k, v in terms.items() if v != 0.0}
    if not terms:
        raise ConstraintParseError(
            f"parameter constraint {expression!r} involves no parameter",
            field="parameter_constraints",
        )
    return LinearConstraint(terms, bound, expression.strip())


# ---------------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _scrambled_sobol_base(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)


def _scrambled_sobol(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    """A fresh Owen-scrambled Sobol engine at position 0 (scrambling costs ~15 ms, so the
    scrambled base is cached and copied; the sequence is identical)."""
    return copy.deepcopy(_scrambled_sobol_base(dim, seed))


@dataclass(frozen=True)
class _Block:
    """Where one tunable parameter lives in model space and compact space."""

    parameter: Parameter
    model_start: int
    model_stop: int
    compact_index: int


@dataclass
class SearchSpace:
    """A set of parameters with optional linear constraints, and their encodings.

    Args:
        parameters: The parameters (objects or their dict form).
        constraints: Linear constraints as strings (``"x1 + 2*x2 <= 1.5"``) or parsed
            :class:`LinearConstraint` objects; only non-log float/int parameters may appear.
    """

    parameters: list[Parameter]
    constraints: list[LinearConstraint] = field(default_factory=list)

    def __init__(
        self,
        parameters: Iterable[Parameter | Mapping[str, Any]],
        constraints: Iterable[str | LinearConstraint] = (),
    ) -> None:
        if isinstance(parameters, Mapping | str):
            raise SearchSpaceError("parameters must be a list", field="parameters")
        self.parameters = [parameter_from_dict(p, i) for i, p in enumerate(parameters)]
        if not self.parameters:
            raise SearchSpaceError(
                "a search space needs at least one parameter", field="parameters"
            )
        seen: set[str] = set()
        for i, p in enumerate(self.parameters):
            if p.name in seen:
                raise SearchSpaceError(
                    f"parameters[{i}]: duplicate parameter name {p.name!r}",
                    field=f"parameters[{i}].name",
                )
            seen.add(p.name)
        if not any(p.is_tunable for p in self.parameters):
            raise SearchSpaceError(
                "a search space needs at least one tunable (non-fixed) parameter",
                field="parameters",
            )
        self._by_name = {p.name: p for p in self.parameters}
        self.constraints = []
        for j, c in enumerate(constraints):
            parsed = c if isinstance(c, LinearConstraint) else parse_parameter_constraint(c)
            for name in parsed.coefficients:
                p = self._by_name.get(name)
                where = f"parameter_constraints[{j}]"
                if p is None:
                    raise ConstraintParseError(
                        f"{where} {parsed.expression!r}: unknown parameter {name!r}", field=where
                    )
                if not isinstance(p, FloatParameter | IntParameter) or p.log:
                    raise ConstraintParseError(
                        f"{where} {parsed.expression!r}: parameter {name!r} must be a "
                        "linear-scale float or int parameter",
                        field=where,
                    )
            self.constraints.append(parsed)
        blocks, m = [], 0
        for p in self.parameters:
            if p.is_tunable:
                blocks.append(_Block(p, m, m + p.n_model_columns, len(blocks)))
                m += p.n_model_columns
        self._blocks: list[_Block] = blocks
        self._model_dim = m
        if self.constraints and not self._constraints_satisfiable():
            raise ConstraintParseError(
                "the parameter constraints leave no feasible point in the search space",
                field="parameter_constraints",
            )

    # -- basic facts -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Parameter:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def tunable(self) -> list[Parameter]:
        return [b.parameter for b in self._blocks]

    @property
    def dim(self) -> int:
        """Number of model-space columns ``d``."""
        return self._model_dim

    @property
    def compact_dim(self) -> int:
        return len(self._blocks)

    @property
    def is_continuous(self) -> bool:
        return all(isinstance(b.parameter, FloatParameter) for b in self._blocks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": [p.to_dict() for p in self.parameters],
            "parameter_constraints": [c.expression for c in self.constraints],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        return cls(d["parameters"], d.get("parameter_constraints", ()))

    # -- validation --------------------------------------------------------------------------
    def validate(self, params: Mapping[str, Any], *, check_constraints: bool = True) -> dict:
        """Canonicalise a full parameter assignment or raise :class:`SearchSpaceError`.

        Fixed parameters may be omitted (they are filled in); unknown names are rejected.
        """
        if not isinstance(params, Mapping):
            raise SearchSpaceError(f"parameters must be an object, got {params!r}")
        unknown = [k for k in params if k not in self._by_name]
        if unknown:
            raise SearchSpaceError(
                f"unknown parameter(s) {unknown}; the search space has {self.names}",
                field=f"parameters.{unknown[0]}",
            )
        out: dict[str, Any] = {}
        for p in self.parameters:
            if p.name not in params:
                if isinstance(p, FixedParameter):
                    out[p.name] = p.value
                    continue
                if isinstance(p, ChoiceParameter) and not p.is_tunable:
                    out[p.name] = p.values[0]
                    continue
                raise SearchSpaceError(
                    f"parameter {p.name!r} is missing", field=f"parameters.{p.name}"
                )
            out[p.name] = p.validate(params[p.name])
        if check_constraints:
            for c in self.constraints:
                if not c.is_satisfied(out):
                    raise SearchSpaceError(
                        f"parameters violate the constraint {c.expression!r}",
                        field="parameters",
                        details={"constraint": c.expression},
                    )
        return out

    def is_feasible(self, params: Mapping[str, Any]) -> bool:
        return all(c.is_satisfied(params) for c in self.constraints)

    @staticmethod
    def signature(params: Mapping[str, Any]) -> tuple:
        """A hashable key for an assignment (used to deduplicate and to name arms)."""
        return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))

    # -- model space -------------------------------------------------------------------------
    def encode(self, params: Mapping[str, Any]) -> Tensor:
        """Map one raw assignment to a ``d``-dim model-space tensor."""
        x = torch.zeros(self._model_dim, dtype=DTYPE)
        for b in self._blocks:
            p, v = b.parameter, params[b.parameter.name]
            if isinstance(p, ChoiceParameter):
                i = p.index(v)
                if p.is_one_hot:
                    x[b.model_start + i] = 1.0
                else:
                    x[b.model_start] = i / (len(p.values) - 1)
            else:
                x[b.model_start] = p.encode(v)  # type: ignore[attr-defined]
        return x

    def encode_many(self, assignments: Sequence[Mapping[str, Any]]) -> Tensor:
        """``n x d`` model-space tensor of ``n`` raw assignments."""
        if not assignments:
            return torch.zeros(0, self._model_dim, dtype=DTYPE)
        return torch.stack([self.encode(a) for a in assignments])

    def decode(self, X: Tensor) -> list[dict[str, Any]]:
        """Map an ``n x d`` model-space tensor to raw assignments (rounding discrete values)."""
        X = X.detach().to(dtype=DTYPE, device="cpu").reshape(-1, self._model_dim)
        out = []
        for row in X.tolist():
            params: dict[str, Any] = {}
            blocks = iter(self._blocks)
            for p in self.parameters:
                if not p.is_tunable:
                    params[p.name] = p.value if isinstance(p, FixedParameter) else p.values[0]  # type: ignore[attr-defined]
                    continue
                b = next(blocks)
                cols = row[b.model_start : b.model_stop]
                if isinstance(p, ChoiceParameter):
                    if p.is_one_hot:
                        i = max(range(len(cols)), key=cols.__getitem__)
                    else:
                        i = round(min(max(cols[0], 0.0), 1.0) * (len(p.values) - 1))
                    params[p.name] = p.values[i]
                else:
                    params[p.name] = p.decode(cols[0])  # type: ignore[attr-defined]
            out.append(params)
        return out

    def model_bounds(self) -> Tensor:
        """``2 x d`` bounds of model space: the unit cube."""
        return torch.stack(
            [torch.zeros(self._model_dim, dtype=DTYPE), torch.ones(self._model_dim, dtype=DTYPE)]
        )

    def _affine(self, p: Parameter) -> tuple[float, float]:
        """``(offset, scale)`` with raw = offset + scale * u for linear float/int params."""
        assert isinstance(p, FloatParameter | IntParameter) and not p.log
        return float(p.lower), float(p.upper - p.lower)

    def inequality_constraints(
        self, *, compact: bool = False
    ) -> list[tuple[Tensor, Tensor, float]] | None:
        """The linear constraints as BoTorch ``(indices, coefficients, rhs)`` with
        ``sum_i coefficients[i] * X[indices[i]] >= rhs`` in model (or compact) space.

        ``a·x <= b`` with ``x_i = lo_i + w_i u_i`` becomes ``sum_i (-a_i w_i) u_i >= a·lo - b``.
        """
        if not self.constraints:
            return None
        index = {
            b.parameter.name: (b.compact_index if compact else b.model_start) for b in self._blocks
        }
        out = []
        for c in self.constraints:
            idx, coef, rhs = [], [], -c.bound
            for name, a in c.coefficients.items():
                lo, w = self._affine(self._by_name[name])
                idx.append(index[name])
                coef.append(-a * w)
                rhs += a * lo
            out.append(
                (torch.tensor(idx, dtype=torch.long), torch.tensor(coef, dtype=DTYPE), float(rhs))
            )
        return out

    # -- compact space (for the mixed optimizer) ----------------------------------------------
    @property
    def has_discrete(self) -> bool:
        return any(not isinstance(b.parameter, FloatParameter) for b in self._blocks)

    @property
    def has_one_hot(self) -> bool:
        return any(
            isinstance(b.parameter, ChoiceParameter) and b.parameter.is_one_hot
            for b in self._blocks
        )

    def compact_bounds(self) -> Tensor:
        upper = []
        for b in self._blocks:
            p = b.parameter
            upper.append(
                float(len(p.values) - 1) if isinstance(p, ChoiceParameter) and p.is_one_hot else 1.0
            )
        return torch.tensor([[0.0] * len(upper), upper], dtype=DTYPE)

    def compact_discrete_dims(self) -> dict[int, list[float]]:
        """Ordinal (int, ordered choice) compact dims and their allowed values."""
        out = {}
        for b in self._blocks:
            p = b.parameter
            if isinstance(p, IntParameter):
                grid = p.grid()
                if grid is not None:
                    out[b.compact_index] = grid
            elif isinstance(p, ChoiceParameter) and not p.is_one_hot:
                out[b.compact_index] = p.grid()
        return out

    def compact_cat_dims(self) -> dict[int, list[float]]:
        """Categorical compact dims (unordered choices) and their category indices."""
        return {
            b.compact_index: [float(i) for i in range(len(b.parameter.values))]  # type: ignore[attr-defined]
            for b in self._blocks
            if isinstance(b.parameter, ChoiceParameter) and b.parameter.is_one_hot
        }

    def compact_to_model(self, Xc: Tensor) -> Tensor:
        """Expand ``... x compact_dim`` to ``... x d`` (categorical index -> one-hot block)."""
        if not self.has_one_hot:
            return Xc
        cols = []
        for b in self._blocks:
            p = b.parameter
            xc = Xc[..., b.compact_index]
            if isinstance(p, ChoiceParameter) and p.is_one_hot:
                k = len(p.values)
                idx = xc.round().clamp(0, k - 1).long()
                cols.append(torch.nn.functional.one_hot(idx, k).to(Xc))
            else:
                cols.append(xc.unsqueeze(-1))
        return torch.cat(cols, dim=-1)

    def model_to_compact(self, X: Tensor) -> Tensor:
        """Project ``... x d`` model-space points to compact space (argmax of one-hot)."""
        if not self.has_one_hot:
            return X
        cols = []
        for b in self._blocks:
            p = b.parameter
            block = X[..., b.model_start : b.model_stop]
            if isinstance(p, ChoiceParameter) and p.is_one_hot:
                cols.append(block.argmax(dim=-1, keepdim=True).to(X))
            else:
                cols.append(block)
        return torch.cat(cols, dim=-1)

    # -- quasi-random design -----------------------------------------------------------------
    def _constraints_satisfiable(self) -> bool:
        U = torch.quasirandom.SobolEngine(self.compact_dim, scramble=True, seed=0).draw(4096)
        return any(self.is_feasible(self.from_unit_row(u)) for u in U.tolist())

    def from_unit_row(self, u: Sequence[float]) -> dict[str, Any]:
        """Map a point of ``[0, 1]^compact_dim`` to a raw assignment (uniform design)."""
        params: dict[str, Any] = {}
        it = iter(u)
        for p in self.parameters:
            params[p.name] = p.from_unit(next(it)) if p.is_tunable else p.from_unit(0.0)
        return params

    def sobol(self, n: int, *, seed: int, skip: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Draw ``n`` feasible points of a scrambled Sobol sequence.

        Points violating the linear constraints are skipped (rejection sampling).

        Args:
            n: Number of points.
            seed: Scrambling seed (the sequence is a deterministic function of it).
            skip: Number of sequence elements already consumed.

        Returns:
            The points and the new number of consumed elements, so that successive calls continue
            the same sequence.
        """
        engine = _scrambled_sobol(self.compact_dim, seed)
        if skip:
            engine.fast_forward(skip)
        out: list[dict[str, Any]] = []
        consumed = skip
        budget = max(64, 512 * n)
        while len(out) < n and consumed - skip < budget:
            U = engine.draw(max(n - len(out), 8), dtype=DTYPE).tolist()
            for u in U:
                consumed += 1
                params = self.from_unit_row(u)
                if self.is_feasible(params):
                    out.append(params)
                    if len(out) == n:
                        break
        return out, consumed
