"""Linear parameter constraints and the parser of their expressions.

A parameter constraint is written as a string over parameter names, ``"x1 + 2*x2 <= 1.5"``
or ``"lr_warmup >= 0.1 * epochs"``, and parsed (with Python's ``ast``, never ``eval``) into
:class:`LinearConstraint`, the canonical form

    sum_i a_i x_i <= b

over raw (user-scale) parameter values. Only ``+ - * /``, numbers and names are accepted, and
only linear combinations: a product or quotient of two parameters is rejected. A point is
feasible when the slack ``b - a·x`` is at least ``-CONSTRAINT_TOL * max(1, |b|, |a_i|)``.

Owns: :class:`LinearConstraint`, :func:`parse_parameter_constraint` and the expression walk
behind it: every parse of a parameter-constraint string goes through this module, so a limit
on expressions (length, nesting depth) is added here once. Checking a constraint against a
search space (known, linear-scale parameters) and its model-space form for BoTorch are
:class:`~assay.platform.space.SearchSpace`'s. Outcome constraints (``"latency_ms <= 20"``) are
domain objects of :mod:`assay.platform.experiment`.

May import: the standard library, :mod:`assay.platform.errors` and
:mod:`assay.platform.parameters`; nothing else of ``assay``.

Example:
    >>> c = parse_parameter_constraint("x1 + 2*x2 <= 1.5")
    >>> c.coefficients, c.bound
    ({'x1': 1.0, 'x2': 2.0}, 1.5)
    >>> c.is_satisfied({"x1": 0.5, "x2": 0.5})
    True
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assay.platform.errors import ConstraintParseError
from assay.platform.parameters import is_number

#: Constraint feasibility tolerance, relative to the constraint's scale.
CONSTRAINT_TOL = 1e-7


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

    if isinstance(node, ast.Constant) and is_number(node.value):
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


#: Limits on a constraint expression (a request must not buy a deep recursion or a 500).
MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_DEPTH = 200


def _depth(tree: ast.AST) -> int:
    """Nesting depth of an expression tree, walked without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def parse_parameter_constraint(expression: str) -> LinearConstraint:
    """Parse ``"x1 + 2*x2 <= 1.5"`` (or ``>=``) into a :class:`LinearConstraint`.

    Both sides may hold parameters; ``lhs >= rhs`` is stored as ``rhs - lhs <= 0`` with the
    constants moved to the bound, and terms whose coefficients cancel are dropped.

    Raises:
        ConstraintParseError: not a string, not an expression, not one ``<=``/``>=``
            comparison, not linear, or no parameter left.
    """
    if not isinstance(expression, str):
        raise ConstraintParseError(
            f"parameter constraint must be a string, got {expression!r}",
            field="parameter_constraints",
        )
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ConstraintParseError(
            f"parameter constraint is longer than {MAX_EXPRESSION_CHARS} characters",
            field="parameter_constraints",
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as e:
        raise ConstraintParseError(
            f"parameter constraint {expression!r} is not a valid expression: {e.msg}",
            field="parameter_constraints",
        ) from None
    except (RecursionError, MemoryError):
        tree = None
    if tree is None or _depth(tree) > MAX_EXPRESSION_DEPTH:
        raise ConstraintParseError(
            f"parameter constraint {expression[:80]!r}... nests deeper than "
            f"{MAX_EXPRESSION_DEPTH} levels",
            field="parameter_constraints",
        )
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
