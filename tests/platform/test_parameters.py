"""Parameter types: validation errors name the parameter and the field."""

from __future__ import annotations

import pytest

from assay.platform.errors import SearchSpaceError
from assay.platform.parameters import parameter_from_dict


@pytest.mark.parametrize(
    ("spec", "fragment", "field"),
    [
        (
            {"name": "x", "type": "float", "bounds": [1, 1]},
            "bounds are empty",
            "parameters[0].bounds",
        ),
        (
            {"name": "x", "type": "float", "bounds": [2, 1]},
            "bounds are empty",
            "parameters[0].bounds",
        ),
        (
            {"name": "x", "type": "float", "bounds": [0, 1], "log": True},
            "positive",
            "parameters[0].bounds",
        ),
        (
            {"name": "x", "type": "int", "bounds": [-3, 5], "log": True},
            "positive",
            "parameters[0].bounds",
        ),
        ({"name": "x", "type": "int", "bounds": [0.5, 5]}, "whole numbers", "parameters[0].bounds"),
        (
            {"name": "x", "type": "float", "bounds": [0, float("inf")]},
            "finite",
            "parameters[0].bounds",
        ),
        ({"name": "x", "type": "float", "bounds": [0]}, "bounds must be", "parameters[0].bounds"),
        ({"name": "x", "type": "banana"}, "type must be", "parameters[0].type"),
        ({"name": "x", "type": "choice", "values": []}, "empty", "parameters[0]"),
        ({"name": "x", "type": "choice", "values": ["a", "a"]}, "duplicates", "parameters[0]"),
        (
            {"name": "x", "type": "float", "bounds": [0, 1], "lgo": True},
            "unknown field",
            "parameters[0].lgo",
        ),
        ({"name": "1x", "type": "float", "bounds": [0, 1]}, "identifier", None),
    ],
)
def test_invalid_parameters_name_the_parameter(spec, fragment, field) -> None:
    with pytest.raises(SearchSpaceError) as e:
        parameter_from_dict(spec)
    assert fragment in str(e.value)
    assert isinstance(e.value, ValueError)
    if spec["name"] == "x":
        assert "'x'" in str(e.value)
    if field:
        assert e.value.field == field
