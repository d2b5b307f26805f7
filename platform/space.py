"""Search spaces: a set of parameters with linear constraints, laid out for the models.

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

Owns: :class:`SearchSpace` (validation of whole assignments, the model-space and compact-space
layouts, the linear constraints in BoTorch's form, the scrambled Sobol design) and ``DTYPE``,
the dtype of every model-space tensor. Each parameter's own validation and encoding live in
:mod:`assay.platform.parameters`, the constraint parser in :mod:`assay.platform.constraints`;
their public names are re-exported here, so ``from assay.platform.space import Float,
parse_parameter_constraint`` keeps working.

May import: torch, the standard library, :mod:`assay.platform.errors`,
:mod:`assay.platform.parameters` and :mod:`assay.platform.constraints`; nothing else of
``assay``.

Example:
    >>> space = SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Int("layers", 1, 8),
    ...                      Choice("opt", ["adam", "sgd"])])
    >>> x = space.encode({"lr": 1e-3, "layers": 4, "opt": "sgd"})
    >>> space.decode(x.unsqueeze(0))[0]["opt"]
    'sgd'
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from assay.platform.constraints import (
    CONSTRAINT_TOL,
    LinearConstraint,
    parse_parameter_constraint,
)
from assay.platform.errors import ConstraintParseError, SearchSpaceError
from assay.platform.parameters import (
    MAX_DISCRETE_GRID,
    Choice,
    ChoiceParameter,
    Fixed,
    FixedParameter,
    Float,
    FloatParameter,
    Int,
    IntParameter,
    Parameter,
    ParameterValue,
    parameter_from_dict,
)

__all__ = [
    "CONSTRAINT_TOL",
    "DTYPE",
    "MAX_DISCRETE_GRID",
    "Block",
    "Choice",
    "ChoiceParameter",
    "Fixed",
    "FixedParameter",
    "Float",
    "FloatParameter",
    "Int",
    "IntParameter",
    "LinearConstraint",
    "Parameter",
    "ParameterValue",
    "SearchSpace",
    "parameter_from_dict",
    "parse_parameter_constraint",
]

#: The dtype of model-space tensors (and of everything the models compute from them).
DTYPE = torch.double


@functools.lru_cache(maxsize=256)
def _scrambled_sobol_base(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)


def _scrambled_sobol(dim: int, seed: int) -> torch.quasirandom.SobolEngine:
    """A fresh Owen-scrambled Sobol engine at position 0 (scrambling costs ~15 ms, so the
    scrambled base is cached and copied; the sequence is identical)."""
    return copy.deepcopy(_scrambled_sobol_base(dim, seed))


@dataclass(frozen=True)
class Block:
    """Where one tunable parameter lives: model-space columns ``model_start:model_stop``
    (one, or ``k`` for a one-hot choice) and compact-space column ``compact_index``."""

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
        #: Values that arms made before a parameter was added take for it (see
        #: :attr:`assay.platform.experiment.ExperimentConfig.parameter_defaults`).
        self.defaults: dict[str, Any] = {}
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
                blocks.append(Block(p, m, m + p.n_model_columns, len(blocks)))
                m += p.n_model_columns
        self._blocks: list[Block] = blocks
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
    def blocks(self) -> list[Block]:
        """Where each tunable parameter lives in model and compact space, in order."""
        return list(self._blocks)

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
        """Map one raw assignment to a ``d``-dim model-space tensor.

        A parameter the assignment lacks takes its entry in :attr:`defaults` (an arm made
        before the parameter was added to a running experiment)."""
        x = torch.zeros(self._model_dim, dtype=DTYPE)
        for b in self._blocks:
            name = b.parameter.name
            p = b.parameter
            v = params[name] if name in params or name not in self.defaults else self.defaults[name]
            if isinstance(p, ChoiceParameter):
                i = p.index(v)
                if p.is_one_hot:
                    x[b.model_start + i] = 1.0
                else:
                    x[b.model_start] = i / (len(p.values) - 1)
            else:
                x[b.model_start] = p.encode(v)  # type: ignore[attr-defined]
        return x

    def is_encodable(self, params: Mapping[str, Any]) -> bool:
        """Whether :meth:`encode` can represent ``params``: every choice takes one of its
        current values (an arm at a value since removed from a running experiment cannot be
        placed in the one-hot/ordinal encoding, so it is left out of the model's data)."""
        for b in self._blocks:
            p = b.parameter
            if isinstance(p, ChoiceParameter):
                v = params.get(p.name, self.defaults.get(p.name))
                if not any((type(c) is bool) == (type(v) is bool) and c == v for c in p.values):
                    return False
        return True

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
