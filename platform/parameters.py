"""Parameters: the four parameter types, their validation, their JSON form and their encoding.

A parameter maps between a user value (``3e-4``, ``4``, ``"adam"``) and a coordinate in the unit
interval:

* :class:`FloatParameter` and :class:`IntParameter` on ``[lower, upper]`` map affinely to
  ``[0, 1]``, after a ``log`` for log-scaled ones (``u = (log x - log lo) / (log hi - log lo)``);
  integers round back to the nearest whole number;
* :class:`ChoiceParameter` ordered choices sit on the grid ``i / (k - 1)``; unordered ones are
  a one-hot block of ``k`` columns (laid out by :class:`~assay.platform.space.SearchSpace`);
* :class:`FixedParameter` is held at one value and never modelled.

``from_unit`` maps ``u ~ U[0, 1]`` to a value so that uniform ``u`` gives a uniform design
(equally likely integers and choices): the Sobol design draws through it.

Owns: the parameter types, the typed helpers ``Float``/``Int``/``Choice``/``Fixed`` (also
``assay.Float`` etc.), :func:`parameter_from_dict` (the REST API's JSON form) and the value
checks they share (:func:`is_number`). The search space that lays parameters out in model space
is :mod:`assay.platform.space`; parameter constraints are :mod:`assay.platform.constraints`.

May import: the standard library and :mod:`assay.platform.errors`; nothing else of ``assay``.

Example:
    >>> lr = Float("lr", 1e-5, 1e-1, log=True)
    >>> lr.encode(1e-3), Int("layers", 1, 8).decode(0.5)
    (0.5, 4)
    >>> parameter_from_dict({"name": "opt", "type": "choice", "values": ["adam", "sgd"]}).is_one_hot
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from assay.platform.errors import SearchSpaceError

ParameterValue = float | int | str | bool
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
#: An integer parameter with more values than this is optimized by continuous relaxation.
MAX_DISCRETE_GRID = 10_000


def is_number(v: Any) -> bool:
    """Whether ``v`` is an ``int`` or ``float`` (``bool`` is not a number here)."""
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
            if not is_number(bound) or not math.isfinite(bound):
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
        if not is_number(value) or not math.isfinite(value):
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
            if is_number(bound) and float(bound) != int(bound):
                raise self._error(f"integer bounds must be whole numbers, got {bound!r}")
        super().__post_init__()
        object.__setattr__(self, "lower", int(self.lower))
        object.__setattr__(self, "upper", int(self.upper))

    def validate(self, value: Any) -> int:
        if not is_number(value) or not math.isfinite(value) or float(value) != int(value):
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
            ordered = all(is_number(v) for v in values)
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
