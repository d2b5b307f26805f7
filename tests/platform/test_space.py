from __future__ import annotations

import math

import pytest
import torch

from assay.platform.errors import ConstraintParseError, SearchSpaceError
from assay.platform.parameters import Choice, Fixed, Float, Int
from assay.platform.space import SearchSpace


def mixed_space() -> SearchSpace:
    return SearchSpace(
        [
            Float("lr", 1e-5, 1e-1, log=True),
            Int("layers", 1, 8),
            Choice("opt", ["adam", "sgd", "lamb"]),
            Choice("batch", [64, 16, 32]),
            Fixed("epochs", 10),
            Float("dropout", 0.0, 0.5),
        ]
    )


def test_duplicate_names_rejected() -> None:
    with pytest.raises(SearchSpaceError, match="duplicate parameter name 'a'"):
        SearchSpace([Float("a", 0, 1), Int("a", 0, 3)])


def test_needs_a_tunable_parameter() -> None:
    with pytest.raises(SearchSpaceError, match="tunable"):
        SearchSpace([Fixed("a", 1)])


def test_validate_assignment() -> None:
    s = mixed_space()
    ok = s.validate({"lr": 1e-3, "layers": 3, "opt": "sgd", "batch": 32, "dropout": 0.1})
    assert ok["epochs"] == 10 and ok["layers"] == 3
    with pytest.raises(SearchSpaceError, match="unknown parameter"):
        s.validate({**ok, "momentum": 0.9})
    with pytest.raises(SearchSpaceError, match="'layers'.*outside"):
        s.validate({**ok, "layers": 9})
    with pytest.raises(SearchSpaceError, match="'layers'.*integer"):
        s.validate({**ok, "layers": 2.5})
    with pytest.raises(SearchSpaceError, match="'opt'.*not one of"):
        s.validate({**ok, "opt": "rmsprop"})
    with pytest.raises(SearchSpaceError, match="'lr' is missing"):
        s.validate({k: v for k, v in ok.items() if k != "lr"})
    with pytest.raises(SearchSpaceError, match="fixed at 10"):
        s.validate({**ok, "epochs": 11})


def test_encoding_layout_and_round_trip() -> None:
    s = mixed_space()
    # lr, layers, opt (3 one-hot), batch (ordered), dropout; epochs dropped
    assert s.dim == 1 + 1 + 3 + 1 + 1
    assert s.compact_dim == 5
    p = {"lr": 1e-3, "layers": 5, "opt": "lamb", "batch": 32, "epochs": 10, "dropout": 0.25}
    x = s.encode(p)
    assert x.shape == (7,)
    assert x[0].item() == pytest.approx(
        (math.log(1e-3) - math.log(1e-5)) / (math.log(1e-1) - math.log(1e-5))
    )
    assert x[1].item() == pytest.approx(4 / 7)
    assert x[2:5].tolist() == [0.0, 0.0, 1.0]
    assert x[5].item() == pytest.approx(0.5)  # batch sorted to [16, 32, 64]
    [back] = s.decode(x.unsqueeze(0))
    assert back["opt"] == "lamb" and back["layers"] == 5 and back["batch"] == 32
    assert back["lr"] == pytest.approx(1e-3) and back["epochs"] == 10


def test_decode_rounds_and_clips() -> None:
    s = mixed_space()
    X = torch.tensor([[1.3, 0.49, 0.2, 0.9, 0.1, 0.76, -0.2]], dtype=torch.double)
    [p] = s.decode(X)
    assert p["lr"] == pytest.approx(1e-1)
    assert p["layers"] == round(1 + 0.49 * 7) and isinstance(p["layers"], int)
    assert p["opt"] == "sgd"
    assert p["batch"] == 64
    assert p["dropout"] == 0.0
    assert s.validate(p) == p


def test_log_int_round_trip() -> None:
    s = SearchSpace([Int("units", 8, 1024, log=True)])
    for v in (8, 9, 100, 1023, 1024):
        assert s.decode(s.encode({"units": v}).unsqueeze(0))[0]["units"] == v


def test_compact_model_maps_are_inverse() -> None:
    s = mixed_space()
    X = s.encode_many(s.sobol(16, seed=1)[0])
    Xc = s.model_to_compact(X)
    assert Xc.shape == (16, 5)
    assert torch.equal(s.compact_to_model(Xc), X)
    assert set(s.compact_cat_dims()) == {2}
    assert set(s.compact_discrete_dims()) == {1, 3}


def test_constraint_on_unknown_or_log_parameter_rejected() -> None:
    with pytest.raises(ConstraintParseError, match="unknown parameter 'z'"):
        SearchSpace([Float("x", 0, 1)], ["x + z <= 1"])
    with pytest.raises(ConstraintParseError, match="linear-scale"):
        SearchSpace([Float("x", 1e-3, 1, log=True), Float("y", 0, 1)], ["x + y <= 1"])
    with pytest.raises(ConstraintParseError, match="no feasible point"):
        SearchSpace([Float("x", 0, 1), Float("y", 0, 1)], ["x + y >= 3"])


def test_inequality_constraints_match_raw_constraint() -> None:
    s = SearchSpace(
        [Float("x1", -2, 3), Float("x2", 10, 20), Int("k", 0, 4)], ["x1 + 2*x2 - k <= 25"]
    )
    [(idx, coef, rhs)] = s.inequality_constraints()
    pts, _ = s.sobol(64, seed=3)
    for p in s.sobol(200, seed=9)[0] + pts:
        x = s.encode(p)
        lhs = float((coef * x[idx]).sum())
        raw_ok = p["x1"] + 2 * p["x2"] - p["k"] <= 25 + 1e-9
        assert (lhs >= rhs - 1e-9) == raw_ok


def test_sobol_is_feasible_deterministic_and_continues() -> None:
    s = SearchSpace([Float("x", 0, 1), Float("y", 0, 1)], ["x + y <= 0.5"])
    a, used_a = s.sobol(10, seed=7)
    b, _ = s.sobol(10, seed=7)
    assert a == b
    assert all(p["x"] + p["y"] <= 0.5 + 1e-12 for p in a)
    c, _ = s.sobol(5, seed=7, skip=used_a)
    assert not {tuple(p.values()) for p in c} & {tuple(p.values()) for p in a}
    both, _ = s.sobol(15, seed=7)
    assert both == a + c


def test_sobol_discrete_values_are_uniform() -> None:
    s = SearchSpace([Int("k", 1, 4), Choice("c", ["a", "b", "c"])])
    pts, _ = s.sobol(240, seed=0)
    counts = {k: sum(p["k"] == k for p in pts) for k in range(1, 5)}
    assert all(50 <= v <= 70 for v in counts.values()), counts
    counts_c = {c: sum(p["c"] == c for p in pts) for c in "abc"}
    assert all(70 <= v <= 90 for v in counts_c.values()), counts_c


def test_to_dict_round_trip() -> None:
    s = mixed_space()
    again = SearchSpace.from_dict(s.to_dict())
    assert again.to_dict() == s.to_dict()
    assert again.parameters == s.parameters


def test_old_import_path_re_exports_parameters_and_constraints() -> None:
    """Parameters and the constraint parser moved out of ``space``; every public name that
    module had still imports from it (and ``assay.Float`` etc. from the root), as the same
    object."""
    import assay
    import assay.platform.constraints as constraints
    import assay.platform.parameters as parameters
    import assay.platform.space as space

    moved = {
        parameters: ["Parameter", "FloatParameter", "IntParameter", "ChoiceParameter",
                     "FixedParameter", "Float", "Int", "Choice", "Fixed", "ParameterValue",
                     "MAX_DISCRETE_GRID", "parameter_from_dict"],
        constraints: ["LinearConstraint", "parse_parameter_constraint", "CONSTRAINT_TOL"],
    }  # fmt: skip
    for module, names in moved.items():
        for name in names:
            assert getattr(space, name) is getattr(module, name), name
            assert name in space.__all__, name
    for name in ("Float", "Int", "Choice", "Fixed", "SearchSpace"):
        assert getattr(assay, name) is getattr(space, name)
