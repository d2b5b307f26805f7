"""The parameter-constraint parser: linear expressions in, canonical ``a·x <= b`` out."""

from __future__ import annotations

import pytest

from assay.platform.constraints import parse_parameter_constraint
from assay.platform.errors import ConstraintParseError


@pytest.mark.parametrize(
    ("expr", "coefs", "bound"),
    [
        ("x1 + 2*x2 <= 1.5", {"x1": 1.0, "x2": 2.0}, 1.5),
        ("x1 >= x2", {"x1": -1.0, "x2": 1.0}, 0.0),
        ("2 * (x1 - x2) / 4 <= 3 - x1", {"x1": 1.5, "x2": -0.5}, 3.0),
        ("-x1 + 0.5 >= -1", {"x1": 1.0}, 1.5),
    ],
)
def test_parse_parameter_constraint(expr, coefs, bound) -> None:
    c = parse_parameter_constraint(expr)
    assert c.coefficients == pytest.approx(coefs)
    assert c.bound == pytest.approx(bound)


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("x1 * x2 <= 1", "not linear"),
        ("x1 <= ", "not a valid expression"),
        ("x1 < 1", "must be"),
        ("x1 ** 2 <= 1", "unsupported"),
        ("1 <= 2", "no parameter"),
        ("x1 / x2 <= 1", "not linear"),
    ],
)
def test_bad_parameter_constraints(expr, fragment) -> None:
    with pytest.raises(ConstraintParseError, match=fragment):
        parse_parameter_constraint(expr)
