"""Accounting figures against Opacus and closed forms; reconstruction bounds (Guo et al. 2022)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from assay.generative.privacy import (
    RDP_ORDERS,
    dpsgd_epsilons,
    fil_reconstruction_mse_bound,
    gaussian_fil_eta2,
    rdp_epsilon_order2,
    rdp_reconstruction_mse_bound,
    reconstruction_report,
    zcdp_rho_for,
    zcdp_to_dp,
)
from assay.generative.tabular.schema import TableSchema


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "delta"), [(1.0, 0.01, 1000, 1e-5), (0.8, 0.05, 300, 1e-6)]
)
def test_epsilons_match_opacus_accountants_stepped_one_by_one(sigma, q, steps, delta):
    from opacus.accountants import PRVAccountant, RDPAccountant

    prv, rdp = PRVAccountant(), RDPAccountant()
    for _ in range(steps):  # as a training loop would step them
        prv.step(noise_multiplier=sigma, sample_rate=q)
        rdp.step(noise_multiplier=sigma, sample_rate=q)
    ours = dpsgd_epsilons(sigma, q, steps, delta)
    assert ours.epsilon_prv == pytest.approx(prv.get_epsilon(delta=delta), rel=1e-9)
    assert ours.epsilon_rdp == pytest.approx(rdp.get_epsilon(delta=delta, alphas=RDP_ORDERS))
    # the extended orders can only tighten Opacus' default RDP bound; PRV is tighter still
    assert ours.epsilon_rdp <= rdp.get_epsilon(delta=delta) + 1e-12
    assert ours.epsilon_prv < ours.epsilon_rdp


def test_order2_rdp_without_subsampling_is_the_gaussian_closed_form():
    # q = 1: T Gaussian steps of sensitivity 1 are (alpha, T alpha / (2 sigma^2))-RDP
    assert rdp_epsilon_order2(2.0, 1.0, 10) == pytest.approx(10 * 2 / (2 * 4.0), rel=1e-9)


def test_worked_reconstruction_check_from_papers_md():
    eps2 = rdp_epsilon_order2(1.0, 0.01, 1000)
    assert eps2 == pytest.approx(0.172, abs=5e-4)
    assert rdp_reconstruction_mse_bound(eps2, [1.0] * 7) == pytest.approx(1.33, abs=5e-3)
    eps2 = rdp_epsilon_order2(2.0, 0.01, 1000)
    assert eps2 == pytest.approx(0.028, abs=5e-4)
    assert rdp_reconstruction_mse_bound(eps2, 1.0) == pytest.approx(8.68, abs=5e-3)


def test_rdp_bound_scales_with_ranges_and_holds_for_the_gaussian_mechanism():
    eps2 = 0.3
    assert rdp_reconstruction_mse_bound(eps2, [2.0]) == pytest.approx(
        4 * rdp_reconstruction_mse_bound(eps2, [1.0])
    )
    # mean over coordinates of diam_i^2
    assert rdp_reconstruction_mse_bound(eps2, [1.0, 3.0]) == pytest.approx(
        (1 + 9) / 2 * rdp_reconstruction_mse_bound(eps2, [1.0])
    )
    # x in [0, 1] released as x + N(0, s^2) is (2, 1/s^2)-RDP; y itself is unbiased, MSE s^2
    for s in (0.3, 1.0, 3.0):
        assert rdp_reconstruction_mse_bound(1 / s**2, 1.0) <= s**2
    assert rdp_reconstruction_mse_bound(math.inf, 1.0) == 0.0


def test_fil_bound_is_cramer_rao_for_a_linear_gaussian_mechanism():
    torch.manual_seed(0)
    d, sigma = 4, 0.7
    a = torch.randn(6, d, dtype=torch.double)
    eta2 = gaussian_fil_eta2(a, sigma)
    assert eta2 == pytest.approx(float((a**2).sum()) / (d * sigma**2))
    # the unbiased least-squares attacker's MSE/d = sigma^2 Tr((A^T A)^-1) / d >= 1/eta^2
    lsq_mse = sigma**2 * float(torch.linalg.inv(a.T @ a).trace()) / d
    assert fil_reconstruction_mse_bound(eta2) <= lsq_mse
    # and it is attained when A = c I
    eta2 = gaussian_fil_eta2(2.0 * torch.eye(d), sigma)
    assert fil_reconstruction_mse_bound(eta2) == pytest.approx(sigma**2 / 4.0)


def test_zcdp_conversion_round_trips_and_beats_the_classic_bound():
    for eps in (0.5, 1.0, 3.0, 5.0):
        rho = zcdp_rho_for(eps, 1e-6)
        assert zcdp_to_dp(rho, 1e-6) == pytest.approx(eps, rel=1e-6)
        assert zcdp_to_dp(rho, 1e-6) <= rho + 2 * math.sqrt(rho * math.log(1e6)) + 1e-12


def test_reconstruction_report_uses_schema_ranges_and_is_strict_json():
    schema = TableSchema.from_dict(
        {
            "columns": [
                {"name": "arm", "type": "categorical", "values": ["a", "b"]},
                {"name": "revenue", "type": "numeric", "lower": 0, "upper": 500},
            ]
        }
    )
    rep = reconstruction_report(0.2, schema)
    unit = rdp_reconstruction_mse_bound(0.2, 1.0)
    assert rep.columns["revenue"]["mse_lower_bound"] == pytest.approx(500**2 * unit)
    assert rep.columns["revenue"]["rmse_lower_bound"] == pytest.approx(500 * math.sqrt(unit))
    assert rep.columns["arm"]["coordinates"] == 3  # a, b, UNK one-hot
    assert rep.fil["applicable"] is False
    d = rep.to_dict()
    assert "informed adversary" in d["threat_model"].lower()
    json.dumps(d, allow_nan=False)
    json.dumps(reconstruction_report(math.inf, schema).to_dict(), allow_nan=False)
