"""MST-style baseline, utility metrics, and the two shipped/generated tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.generative.privacy import zcdp_to_dp
from assay.generative.tabular.baseline import MSTSynthesizer
from assay.generative.tabular.data import ab_logs, load_rand_hie, split_rows
from assay.generative.tabular.metrics import marginal_tv, tstr_accuracy
from assay.generative.tabular.schema import RowCodec


@pytest.fixture(scope="module")
def ab():
    schema, table = ab_logs(6000, seed=5)
    codec = RowCodec(schema)
    codes = codec.to_codes(table)
    train, test = split_rows(len(codes), 0.25, 0)
    return schema, codec, codes[train], codes[test]


def test_marginal_tv_is_zero_on_identical_tables_and_one_on_disjoint_ones():
    a = np.array([[0, 0], [1, 1], [0, 1]])
    assert marginal_tv(a, a, [2, 2], 1) == {"mean": 0.0, "max": 0.0}
    b = np.array([[2, 2], [2, 2]])
    assert marginal_tv(a, b, [3, 3], 2)["mean"] == pytest.approx(1.0)
    # 1-way: column 0 has p=(2/3,1/3,0) vs (1/2,1/2,0)
    c = np.array([[0, 0], [1, 0]])
    assert marginal_tv(a, c, [3, 3], 1)["max"] == pytest.approx(2 / 3)


def test_non_private_tree_beats_independent_columns(ab):
    _, codec, train, test = ab
    tree = MSTSynthesizer(math.inf).fit(train, codec.sizes)
    assert len(tree.edges) == codec.n_columns - 1
    synth = tree.sample(len(test), seed=0)
    rng = np.random.default_rng(0)
    indep = np.stack([rng.permutation(train[:, j])[: len(test)] for j in range(train.shape[1])], 1)
    assert marginal_tv(test, synth, codec.sizes, 2)["mean"] < (
        0.7 * marginal_tv(test, indep, codec.sizes, 2)["mean"]
    )
    assert tree.nll(test) < MSTSynthesizer(math.inf).fit(train[:, :1], codec.sizes[:1]).nll(
        test[:, :1]
    ) + sum(np.log(codec.sizes[1:]))


def test_private_baseline_accounts_its_budget_and_degrades_with_epsilon(ab):
    _, codec, train, test = ab
    tvs = {}
    for eps in (0.05, 1.0, math.inf):
        mst = MSTSynthesizer(eps, 1e-6, seed=1).fit(train, codec.sizes)
        priv = mst.privacy()
        if math.isfinite(eps):
            assert priv["epsilon"] == pytest.approx(eps, rel=1e-6)
            assert zcdp_to_dp(priv["rho"], 1e-6) <= eps * (1 + 1e-6)
            assert priv["epsilon_rdp2"] == pytest.approx(2 * priv["rho"])
        synth = mst.sample(len(test), seed=0)
        assert ((synth >= 0) & (synth < np.array(codec.sizes))).all()
        assert math.isfinite(mst.nll(test))
        tvs[eps] = marginal_tv(test, synth, codec.sizes, 2)["mean"]
    assert tvs[0.05] > tvs[1.0] > tvs[math.inf]


def test_tstr_brackets_and_real_data_reference(ab):
    schema, codec, train, test = ab
    target = schema.index("segment")
    real = tstr_accuracy(train, train, test, codec.sizes, target)
    assert real["tstr"] == real["trtr"] > real["majority"] + 0.1
    noise = np.stack([np.random.default_rng(0).integers(0, s, len(train)) for s in codec.sizes], 1)
    assert tstr_accuracy(noise, train, test, codec.sizes, target)["tstr"] < real["trtr"] - 0.1


def test_ab_logs_look_like_experiment_logs():
    schema, t = ab_logs(40_000, seed=0, treatment_lift=0.2)
    RowCodec(schema).encode({k: v[:100] for k, v in t.items()})  # in schema
    treat = t["arm"] == "treatment"
    assert 0.48 < treat.mean() < 0.52
    assert t["sessions"][treat].mean() > 1.1 * t["sessions"][~treat].mean()
    rev = np.sort(t["revenue"])[::-1]
    assert 0.5 < (rev == 0).mean() < 0.97  # most users do not pay
    assert rev[: len(rev) // 100].sum() > 0.25 * rev.sum()  # the top 1% carry the revenue
    assert (t["clicks"] <= 3 * t["sessions"]).all()
    power = t["segment"] == "power"
    assert t["sessions"][power].mean() > 5 * t["sessions"][t["segment"] == "new"].mean()


def test_rand_hie_ships_with_statsmodels_and_fits_its_schema():
    schema, table = load_rand_hie()
    codec = RowCodec(schema)
    codes = codec.to_codes(table)
    assert codes.shape == (20190, 8)
    for name in ("coinsurance", "idp", "health"):  # declared values cover the real table
        j = schema.index(name)
        assert (codes[:, j] < len(schema.column(name).values)).all()
    assert set(table["coinsurance"]) == {"0", "25", "50", "95", "100"}
