"""Trial-level early stopping on hand-built curves with known answers."""

from __future__ import annotations

import math

import pytest

from assay.platform.early_stopping import (
    Curve,
    EarlyStoppingConfig,
    StoppingRuleConfig,
    curve_noise,
    decide,
    early_stopped_values,
    expected_improvement,
    improvement_rate,
    predict_final,
    ramped_percentile,
    rule_line,
)
from assay.platform.errors import ValidationError
from assay.platform.experiment import ExperimentConfig, Objective, OutcomeConstraint

ACC = Objective("acc")
LOSS = Objective("loss", minimize=True)


def curve(tid: int, values: list[float], *, metric: str = "acc", finished: bool = False,
          start: int = 1, **extra: list[float]) -> Curve:  # fmt: skip
    reports = []
    for i, v in enumerate(values):
        m = {metric: v} | {k: vs[i] for k, vs in extra.items()}
        reports.append((start + i, m))
    return Curve.from_reports(tid, reports, finished=finished)


def cfg(**kw: object) -> EarlyStoppingConfig:
    return EarlyStoppingConfig.parse(kw, metrics=["acc", "loss", "latency"], objective="acc")


# Five finished curves, 10 steps each, level 0.5..0.9 (the higher, the better).
LEVELS = [0.5, 0.6, 0.7, 0.8, 0.9]


def saturating(level: float, n: int = 10) -> list[float]:
    return [level * (1 - math.exp(-0.5 * t)) for t in range(1, n + 1)]


FINISHED = [curve(10 + i, saturating(lv), finished=True) for i, lv in enumerate(LEVELS)]


# -- percentile -------------------------------------------------------------------------------
def test_percentile_stops_the_bottom_and_spares_the_rest() -> None:
    c = cfg(strategy="percentile", percentile=50, min_curves=3, top_k=1)
    bad = curve(1, saturating(0.4)[:4])
    good = curve(2, saturating(0.85)[:4])
    d_bad = decide(c, ACC, bad, FINISHED)
    d_good = decide(c, ACC, good, FINISHED)
    assert d_bad.should_stop and d_bad.strategy == "percentile"
    # The median of the five others at step 4 is the 0.7 curve's value there.
    assert d_bad.threshold == pytest.approx(saturating(0.7)[3])
    assert d_bad.step == 4 and d_bad.details["curves"] == 5
    assert not d_good.should_stop


def test_percentile_orientation_for_a_minimized_objective() -> None:
    c = EarlyStoppingConfig.parse({"strategy": "percentile", "top_k": 0})
    others = [curve(10 + i, [lv] * 5, metric="loss", finished=True) for i, lv in enumerate(
        [1.0, 2.0, 3.0, 4.0])]  # fmt: skip
    high = curve(1, [3.5] * 3, metric="loss")  # loss above the median 2.5: worse
    low = curve(2, [1.5] * 3, metric="loss")
    assert decide(c, LOSS, high, others).should_stop
    assert not decide(c, LOSS, low, others).should_stop


def test_percentile_spares_the_top_k_even_when_below_the_line() -> None:
    # Only two other curves reached step 3 and both are better; with top_k=3 the trial,
    # ranking third, is protected although it is below the median.
    others = [curve(10, [0.9] * 3, finished=True), curve(11, [0.8] * 3, finished=True),
              curve(12, [0.7] * 3, finished=True), curve(13, [0.6] * 3, finished=True)]  # fmt: skip
    c3 = cfg(strategy="percentile", min_curves=2, top_k=3)
    c1 = cfg(strategy="percentile", min_curves=2, top_k=1)
    me = curve(1, [0.65] * 3)
    assert decide(c1, ACC, me, others).should_stop
    d = decide(c3, ACC, me, others[:2])
    assert not d.should_stop and "top 3" in d.reason


def test_percentile_waits_for_min_curves_and_min_progression() -> None:
    bad = curve(1, [0.1] * 4)
    d = decide(cfg(strategy="percentile", min_curves=6), ACC, bad, FINISHED)
    assert not d.should_stop and "min_curves" in d.reason
    d = decide(cfg(strategy="percentile", min_progression=5), ACC, bad, FINISHED)
    assert not d.should_stop and "too early" in d.reason
    # Other curves that have not reached the step do not count.
    short = [curve(20 + i, [0.9] * 2) for i in range(5)]
    assert not decide(cfg(strategy="percentile"), ACC, bad, short).should_stop


def test_patience_needs_consecutive_bad_checks() -> None:
    c = cfg(strategy="percentile", patience=3, top_k=0)
    # Bad at steps 3 and 4 but good at step 2: two consecutive bad checks, not three.
    me = curve(1, [0.1, 0.6, 0.05, 0.05])
    others = [curve(10 + i, [0.2, 0.3, 0.4, 0.5, 0.6], finished=True) for i in range(4)]
    d = decide(c, ACC, me, others)
    assert not d.should_stop and "2 of the last 3" in d.reason
    me = curve(1, [0.1, 0.1, 0.05, 0.05])
    assert decide(c, ACC, me, others).should_stop


def test_ramped_percentile_rises_linearly_to_p_at_min_curves() -> None:
    assert [ramped_percentile(50, n, 5, 3) for n in range(1, 8)] == pytest.approx(
        [None, None, 50 / 3, 100 / 3, 50, 50, 50]  # type: ignore[list-item]
    )
    # Without a ramp: nothing below min_curves; ramp_from = min_curves is the plain rule.
    assert [ramped_percentile(50, n, 5, None) for n in (4, 5)] == [None, 50]
    assert [ramped_percentile(25, n, 4, 4) for n in (3, 4)] == [None, 25]
    assert ramped_percentile(60, 1, 3, 1) == pytest.approx(20.0)


# Completed curves at step 2: 0.6, 0.7, 0.8 (then 0.9 with a fourth).
RAMP_DONE = [curve(10 + i, [lv - 0.1, lv, lv + 0.1], finished=True)
             for i, lv in enumerate([0.6, 0.7, 0.8, 0.9])]  # fmt: skip


def test_percentile_ramp_decides_early_at_a_lower_percentile() -> None:
    ramp = cfg(strategy="percentile", percentile=50, min_curves=5, ramp_from=3, top_k=0,
               reference="completed")  # fmt: skip
    low, mid = curve(1, [0.3, 0.62]), curve(2, [0.3, 0.65])
    three = RAMP_DONE[:3]
    # Three curves: the 16.7th percentile of (0.6, 0.7, 0.8), 0.6 + (1/3) 0.1.
    d = decide(ramp, ACC, low, three)
    assert d.should_stop and d.threshold == pytest.approx(0.6 + 0.1 / 3)
    assert d.details["percentile"] == pytest.approx(50 / 3) and "ramped from 50" in d.reason
    assert not decide(ramp, ACC, mid, three).should_stop
    # The plain median on the same three curves stops the middling trial too; the plain rule
    # with min_curves 5 (Optuna's n_startup_trials) decides nothing yet.
    assert decide(cfg(strategy="percentile", min_curves=3, top_k=0, reference="completed"),
                  ACC, mid, three).should_stop  # fmt: skip
    plain = cfg(strategy="percentile", min_curves=5, top_k=0, reference="completed")
    assert not decide(plain, ACC, low, three).should_stop
    # Two curves: below ramp_from, no decision. Four: the 33.3th percentile, exactly 0.7.
    d2 = decide(ramp, ACC, low, three[:2])
    assert not d2.should_stop and "ramp_from is 3" in d2.reason
    d4 = decide(ramp, ACC, mid, RAMP_DONE)
    assert d4.should_stop and d4.threshold == pytest.approx(0.7)
    # Five: the median itself, the same decision as without the ramp.
    five = [*RAMP_DONE, curve(14, [0.9, 1.0, 1.1], finished=True)]
    assert decide(ramp, ACC, mid, five).threshold == pytest.approx(0.8)
    assert decide(ramp, ACC, mid, five).to_dict()["should_stop"] == decide(
        plain, ACC, mid, five).should_stop  # fmt: skip


def test_percentile_ramp_spares_the_top_k_and_orients_a_minimized_objective() -> None:
    losses = [curve(10 + i, [lv + 0.1, lv, lv - 0.1], metric="loss", finished=True)
              for i, lv in enumerate([0.4, 0.5, 0.6])]  # fmt: skip
    ramp = cfg(strategy="percentile", min_curves=5, ramp_from=3, top_k=0)
    # Lower is better: the line is the 83.3th percentile of (0.4, 0.5, 0.6) in loss units.
    bad = curve(1, [0.9, 0.58], metric="loss")
    d = decide(ramp, LOSS, bad, losses)
    assert d.should_stop and d.threshold == pytest.approx(0.6 - 0.1 / 3)
    assert not decide(ramp, LOSS, curve(2, [0.9, 0.55], metric="loss"), losses).should_stop
    # The best curve at its step is spared with top_k = 1 wherever the line is.
    lead = cfg(strategy="percentile", min_curves=5, ramp_from=3, top_k=1, percentile=99)
    d = decide(lead, ACC, curve(3, [0.3, 0.85]), RAMP_DONE[:3])
    assert not d.should_stop and d.reason.startswith("spared")


# -- threshold --------------------------------------------------------------------------------
def test_percentile_reference_completed_ignores_stopped_and_running_curves() -> None:
    # Step 2 values: three stopped curves at 0.1 and two completed at 0.8/0.9. Against all
    # curves the median is 0.1 and 0.5 is not worse; against the completed ones (Optuna's
    # median rule) the median is 0.85 and 0.5 is stopped.
    stopped = [Curve(20 + i, {"acc": [(1, 0.05), (2, 0.1)]}, False, {}, "early_stopped")
               for i in range(3)]  # fmt: skip
    done = [curve(10, [0.7, 0.8, 0.85], finished=True), curve(11, [0.8, 0.9, 0.95], finished=True)]
    mine = curve(1, [0.3, 0.5])
    c = cfg(strategy="percentile", min_curves=2, top_k=0)
    assert not decide(c, ACC, mine, [*stopped, *done]).should_stop
    r = cfg(strategy="percentile", min_curves=2, top_k=0, reference="completed")
    d = decide(r, ACC, mine, [*stopped, *done])
    assert d.should_stop and d.details["curves"] == 2
    assert d.threshold == pytest.approx(0.85) and "completed" in d.reason
    # Fewer completed curves than min_curves: no decision.
    assert not decide(r, ACC, mine, [*stopped, done[0]]).should_stop


def test_percentile_compare_best_so_far_survives_one_dip() -> None:
    # A good trial dips at step 3 below the median of the others there; by its last value it
    # is stopped, by its best value so far (Optuna's median rule) it is kept. Minimized too.
    others = [curve(10 + i, [0.5, 0.6, lv], finished=True) for i, lv in enumerate([0.6, 0.7, 0.8])]
    dip = curve(1, [0.6, 0.85, 0.65])
    c = cfg(strategy="percentile", min_curves=3, top_k=0)
    assert decide(c, ACC, dip, others).should_stop
    b = cfg(strategy="percentile", min_curves=3, top_k=0, compare="best")
    d = decide(b, ACC, dip, others)
    assert not d.should_stop and d.value == pytest.approx(0.85) and "best so far" in d.reason
    losses = [curve(10 + i, [0.5, 0.4, lv], metric="loss", finished=True)
              for i, lv in enumerate([0.4, 0.3, 0.2])]  # fmt: skip
    bump = curve(1, [0.4, 0.1, 0.35], metric="loss")
    assert decide(cfg(strategy="percentile", min_curves=3, top_k=0), LOSS, bump, losses).should_stop
    assert not decide(b, LOSS, bump, losses).should_stop


def test_threshold_on_the_objective_and_on_another_metric() -> None:
    c = cfg(strategy="threshold", bound=0.3, min_progression=3)
    assert not decide(c, ACC, curve(1, [0.1, 0.2]), []).should_stop  # before min_progression
    d = decide(c, ACC, curve(1, [0.1, 0.2, 0.25]), [])
    assert d.should_stop and d.threshold == 0.3 and d.step == 3
    assert not decide(c, ACC, curve(1, [0.1, 0.2, 0.35]), []).should_stop
    c = cfg(strategy="threshold", metric="loss", stop_when="above", bound=2.0)
    me = curve(1, [0.9, 0.95], loss=[1.5, 2.5])
    assert decide(c, ACC, me, []).should_stop


# -- clearly violated constraints --------------------------------------------------------------
def test_clearly_violated_constraint_accounts_for_noise() -> None:
    oc = [OutcomeConstraint.parse("latency <= 20")]
    c = cfg(strategy="percentile", min_curves=99)  # the strategy itself never decides here
    noisy = [21.0, 19.0, 22.0, 18.5, 21.5, 19.5]  # sd ~ 1.5, barely over 20: not clear
    far = [40.0, 41.0, 39.5, 40.5, 41.0, 40.0]  # far over, small noise: clear
    me_noisy = curve(1, [0.5] * 6, latency=noisy)
    me_far = curve(2, [0.5] * 6, latency=far)
    assert not decide(c, ACC, me_noisy, [], constraints=oc).should_stop
    d = decide(c, ACC, me_far, [], constraints=oc)
    assert d.should_stop and d.strategy == "constraint" and d.metric == "latency"
    assert d.details["noise_sd"] > 0 and d.details["excess"] == pytest.approx(20.0)
    # Over by 4.5 with a noise SD of about 2.3: 3 SDs is not enough, 0.1 SD is.
    near = [21.5, 24.5, 21.5, 24.5, 21.5, 24.5]
    me_near = curve(3, [0.5] * 6, latency=near)
    assert not decide(c, ACC, me_near, [], constraints=oc).should_stop
    loose = cfg(strategy="percentile", min_curves=99, z=0.1)
    assert decide(loose, ACC, me_near, [], constraints=oc).should_stop
    off = cfg(strategy="percentile", min_curves=99, constraints=False)
    assert not decide(off, ACC, me_far, [], constraints=oc).should_stop


def test_curve_noise_is_robust_to_a_trend() -> None:
    trend = [0.1 * t for t in range(10)]  # a straight line has no noise
    assert curve_noise(trend) == pytest.approx(0.0, abs=1e-12)
    assert curve_noise([1.0, 2.0]) is None


# -- model ------------------------------------------------------------------------------------
def test_model_predicts_the_final_value_of_an_affine_copy() -> None:
    # The partial curve is exactly 0.5 * the 0.9 curve + 0.1 (and close to no other shape):
    # the ensemble must predict 0.5 * final + 0.1 with a small interval.
    target = [0.5 * v + 0.1 for v in saturating(0.9)]
    same_shape = [curve(10 + i, saturating(lv), finished=True) for i, lv in enumerate(LEVELS)]
    pred = predict_final(curve(1, target[:5]), same_shape, "acc")
    assert pred is not None
    assert pred.mean == pytest.approx(target[-1], abs=1e-6)
    assert pred.members == 5 and pred.horizon == 10


def test_model_trusts_curves_that_are_close_not_just_of_the_same_shape() -> None:
    # A fast learner that saturates at 0.9 and a slow one rising 0.05 per step (0.5 at step
    # 10). The partial curve has the slow one's slope but the fast one's level: a transfer
    # of the slow shape would predict 0.8 + 0.5 = 1.3, past anything ever seen. The kernel
    # on the raw distance puts (almost) all the weight on the fast curve, so the prediction
    # is the fast curve's final plus the mean offset over the window.
    fast = [0.9 - 0.1 * 0.5**t for t in range(1, 11)]
    slow = [0.05 * t for t in range(1, 11)]
    done = [curve(10, fast, finished=True), curve(11, slow, finished=True)]
    partial = [0.8 + 0.05 * t for t in range(1, 4)]
    pred = predict_final(curve(1, partial), done, "acc", neighbours=1)
    assert pred is not None and pred.members == 2
    offset = sum(p - f for p, f in zip(partial, fast[:3], strict=False)) / 3
    assert pred.mean == pytest.approx(fast[-1] + offset, abs=1e-3)
    assert pred.mean < 1.0


def test_model_fits_the_transfer_on_the_recent_window_only() -> None:
    # An early glitch outside the last ``window`` steps changes nothing.
    target = [0.5 * v + 0.1 for v in saturating(0.9)][:8]
    glitched = [0.0, *target[1:]]
    a = predict_final(curve(1, target), FINISHED, "acc", window=5)
    b = predict_final(curve(1, glitched), FINISHED, "acc", window=5)
    assert a is not None and b is not None
    assert a.mean == pytest.approx(b.mean, abs=1e-12) and a.sd == pytest.approx(b.sd, abs=1e-12)
    c = predict_final(curve(1, glitched), FINISHED, "acc", window=8)
    assert c is not None and c.mean != pytest.approx(a.mean, abs=1e-6)


def test_model_interval_includes_the_noise_of_a_final_value() -> None:
    # Three finished copies of one curve with alternating noise of +-0.01 around it: the
    # partial curve is the clean curve, so every member predicts about the same final value,
    # and the standard deviation is at least the copies' own noise (curve_noise ~ 0.014).
    base = saturating(0.9)
    noisy = [[v + (0.01 if t % 2 else -0.01) for t, v in enumerate(base)] for _ in range(3)]
    done = [curve(10 + i, n, finished=True) for i, n in enumerate(noisy)]
    pred = predict_final(curve(1, base[:6]), done, "acc")
    assert pred is not None
    sigma = curve_noise(noisy[0])
    assert sigma is not None and pred.sd >= sigma * 0.99
    lo, hi = pred.interval
    assert lo < base[-1] < hi


def test_model_stops_a_hopeless_trial_and_keeps_a_promising_one() -> None:
    c = cfg(strategy="model", alpha=0.05, min_curves=3, top_k=1)
    best = FINISHED[-1].final_value("acc")
    hopeless = curve(1, saturating(0.3)[:4])
    promising = curve(2, saturating(0.92)[:4])
    d = decide(c, ACC, hopeless, FINISHED, best_feasible=best)
    assert d.should_stop and d.details["p_better"] < 0.05
    lo, hi = d.details["interval"]
    assert lo < d.details["predicted_final"] < hi < best
    d = decide(c, ACC, promising, FINISHED, best_feasible=best)
    assert not d.should_stop
    # Nothing to beat yet, or too few finished curves: no decision.
    assert not decide(c, ACC, hopeless, FINISHED).should_stop
    assert not decide(c, ACC, hopeless, FINISHED[:2], best_feasible=best).should_stop


def test_expected_improvement_closed_form() -> None:
    # sd (phi(z) + z Phi(z)): at z = 0 it is sd * phi(0); far below the best it vanishes; far
    # above it is the excess; for a minimized metric the sign flips; sd = 0 is the plain excess.
    assert expected_improvement(0.5, 0.1, 0.5) == pytest.approx(0.1 / math.sqrt(2 * math.pi))
    assert expected_improvement(0.0, 0.1, 1.0) < 1e-20
    assert expected_improvement(2.0, 0.1, 1.0) == pytest.approx(1.0, abs=1e-9)
    assert expected_improvement(0.2, 0.0, 0.5, -1.0) == pytest.approx(0.3)
    assert expected_improvement(0.8, 0.0, 0.5, -1.0) == 0.0


def test_improvement_rate_counts_stopped_epochs_and_finished_gains() -> None:
    # Two finished noisy curves (10 steps each) and one stopped at step 2: the gain is the
    # finished finals' EI over the best, the cost 10 + 10 + 2 steps; a running curve counts
    # for nothing (it has not paid its cost yet).
    noisy = [[v + (0.01 if t % 2 else -0.01) for t, v in enumerate(saturating(lv))]
             for lv in (0.8, 0.9)]  # fmt: skip
    done = [curve(10 + i, n, finished=True) for i, n in enumerate(noisy)]
    stopped = Curve(20, {"acc": [(1, 0.1), (2, 0.15)]}, False, {}, "early_stopped")
    running = Curve(21, {"acc": [(1, 0.5), (2, 0.6), (3, 0.7)]}, False, {}, "running")
    best = max(c.final_value("acc") for c in done)
    rate, spent, ended = improvement_rate([*done, stopped, running], "acc", best)
    gain = sum(
        expected_improvement(c.final_value("acc"), curve_noise(n), best)
        for c, n in zip(done, noisy, strict=True)
    )
    assert (spent, ended) == (22, 3)
    assert rate == pytest.approx(gain / 22)
    assert improvement_rate([running], "acc", best) == (0.0, 0.0, 0)


def test_rate_criterion_weighs_expected_improvement_against_remaining_epochs() -> None:
    # The same curves and best; a hopeless trial's EI is far below what its remaining epochs
    # buy at the experiment's rate, a promising one's (a level above the best) far above.
    # Many cheap stops before lower the rate per epoch, and so stop less.
    noisy = [[v + (0.01 if t % 2 else -0.01) for t, v in enumerate(saturating(lv))]
             for lv in LEVELS]  # fmt: skip
    done = [curve(10 + i, n, finished=True) for i, n in enumerate(noisy)]
    best = max(c.final_value("acc") for c in done)
    c = cfg(strategy="model", criterion="rate", min_curves=3, top_k=0)
    hopeless = curve(1, saturating(0.55)[:3])
    d = decide(c, ACC, hopeless, done, best_feasible=best)
    assert d.should_stop and d.details["criterion"] == "rate"
    assert d.details["expected_improvement"] < d.details["remaining"] * d.details["rate"]
    assert d.details["remaining"] == 7
    promising = curve(2, saturating(0.95)[:3])
    assert not decide(c, ACC, promising, done, best_feasible=best).should_stop
    # Near the best: stopped while new trials still pay (few cheap stops) ...
    near = curve(3, [v - 0.05 for v in saturating(0.9)[:3]])
    assert decide(c, ACC, near, done, best_feasible=best).should_stop
    # ... kept once many cheap stops have shown that new trials rarely pay.
    cheap = [Curve(100 + i, {"acc": [(1, 0.05)]}, False, {}, "early_stopped") for i in range(200)]
    d = decide(c, ACC, near, [*done, *cheap], best_feasible=best)
    assert not d.should_stop, d.reason


# -- rule line and settings -------------------------------------------------------------------
def test_rule_line_is_the_percentile_per_step() -> None:
    c = cfg(strategy="percentile", min_curves=3)
    line = dict(rule_line(c, ACC, FINISHED))
    assert sorted(line) == list(range(1, 11))
    assert line[4] == pytest.approx(saturating(0.7)[3])
    # With reference="completed" a stopped curve does not move the line.
    low = Curve(30, {"acc": [(s, 0.0) for s in range(1, 11)]}, False, {}, "early_stopped")
    r = cfg(strategy="percentile", min_curves=3, reference="completed")
    assert dict(rule_line(r, ACC, [*FINISHED, low])) == line
    assert dict(rule_line(c, ACC, [*FINISHED, low]))[4] < line[4]
    # With a ramp the line starts at four curves (one trial's three others), lower at first:
    # the 16.7th percentile of (0.6, 0.7, 0.8, 0.9) at step 2.
    ramp = cfg(strategy="percentile", min_curves=5, ramp_from=3, reference="completed")
    assert dict(rule_line(ramp, ACC, RAMP_DONE))[2] == pytest.approx(0.65)
    assert rule_line(cfg(strategy="percentile", min_curves=5), ACC, RAMP_DONE) == []
    assert rule_line(cfg(strategy="threshold", bound=0.2, min_progression=8), ACC, FINISHED) == [
        (8, 0.2), (9, 0.2), (10, 0.2)]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"strategy": "median"}, "early_stopping.strategy"),
        ({"strategy": "percentile", "percentile": 120}, "early_stopping.percentile"),
        ({"strategy": "percentile", "patience": 0}, "early_stopping.patience"),
        ({"strategy": "percentile", "min_progression": -1}, "early_stopping.min_progression"),
        ({"strategy": "percentile", "top_k": 1.5}, "early_stopping.top_k"),
        ({"strategy": "model", "alpha": 1.0}, "early_stopping.alpha"),
        ({"strategy": "model", "criterion": "cost"}, "early_stopping.criterion"),
        ({"strategy": "percentile", "reference": "stopped"}, "early_stopping.reference"),
        ({"strategy": "percentile", "compare": "mean"}, "early_stopping.compare"),
        ({"strategy": "threshold"}, "early_stopping.bound"),
        ({"strategy": "threshold", "metric": "latency", "bound": 1}, "early_stopping.stop_when"),
        ({"strategy": "percentile", "metric": "nope"}, "early_stopping.metric"),
        ({"strategy": "percentile", "metric": "latency"}, "early_stopping.metric"),
        ({"strategy": "percentile", "typo": 1}, "early_stopping.typo"),
        ({"strategy": "percentile", "constraints": "yes"}, "early_stopping.constraints"),
        ({"strategy": "percentile", "min_curves": 10**400}, "early_stopping.min_curves"),
        ({"strategy": "threshold", "bound": -(10**400)}, "early_stopping.bound"),
        ({"strategy": "percentile", "ramp_from": 0}, "early_stopping.ramp_from"),
        ({"strategy": "percentile", "ramp_from": 2.5}, "early_stopping.ramp_from"),
        ({"strategy": "percentile", "ramp_from": "3"}, "early_stopping.ramp_from"),
        ({"strategy": "percentile", "min_curves": 3, "ramp_from": 4}, "early_stopping.ramp_from"),
        ({"strategy": "model", "ramp_from": 2}, "early_stopping.ramp_from"),
    ],
)
def test_bad_settings_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        EarlyStoppingConfig.parse(spec, metrics=["acc", "latency"], objective="acc")
    assert e.value.field == field


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"rule": "never"}, "stopping.rule"),
        ({"rule": "improvement", "window": 0}, "stopping.window"),
        ({"rule": "model", "threshold": 0}, "stopping.threshold"),
        ({"rule": "model", "auto": 1}, "stopping.auto"),
    ],
)
def test_bad_stopping_rules_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        StoppingRuleConfig.parse(spec)
    assert e.value.field == field


def test_experiment_config_round_trips_the_settings() -> None:
    d = {
        "name": "es",
        "parameters": [{"name": "x", "type": "float", "bounds": [0, 1]}],
        "objective": "acc",
        "tracking_metrics": ["latency"],
        "early_stopping": {"strategy": "percentile", "percentile": 25, "patience": 2},
        "stopping": {"rule": "improvement", "window": 4, "auto": True},
    }
    config = ExperimentConfig.from_dict(d)
    assert config.early_stopping is not None and config.early_stopping.percentile == 25.0
    assert config.stopping is not None and config.stopping.auto
    again = ExperimentConfig.from_dict(config.to_dict())
    assert again.early_stopping == config.early_stopping and again.stopping == config.stopping
    bad = d | {"early_stopping": {"strategy": "percentile", "metric": "latency"}}
    with pytest.raises(ValidationError) as e:
        ExperimentConfig.from_dict(bad)
    assert e.value.field == "early_stopping.metric"


# -- what the model makes of early-stopped trials (the generators' ``early_stopped``) --------
def _stopped(tid: int, values: list[float], **extra: list[float]) -> Curve:
    c = curve(tid, values, **extra)
    return Curve(c.trial_id, c.points, False, {}, "early_stopped")


def _done(tid: int, values: list[float]) -> Curve:
    c = curve(tid, values, finished=True)
    return Curve(c.trial_id, c.points, True, {"acc": values[-1]}, "completed")


def test_early_stopped_values_per_mode() -> None:
    done = [_done(1, [0.5, 0.6, 0.7, 0.8]), _done(2, [0.3, 0.4, 0.5, 0.6])]
    cut = _stopped(3, [0.31, 0.42], latency=[5.0, 7.0])
    running = curve(4, [0.1])
    curves = [*done, cut, running]
    assert early_stopped_values(curves, ["acc"], "exclude") == {}
    # Only the stopped trial, with its last reported value of each modelled metric.
    assert early_stopped_values(curves, ["acc", "latency"], "last_value") == {
        3: {"acc": 0.42, "latency": 7.0}
    }
    # Predicted: the curve-transfer ensemble's extrapolation (the close curve 2 shifted by
    # +0.01..0.02 ends near 0.61), above the last value of a curve still rising.
    pred = early_stopped_values(curves, ["acc"], "predicted")[3]["acc"]
    assert pred == pytest.approx(predict_final(cut, done, "acc").mean)
    assert 0.58 < pred < 0.64
    # No finished curve reached the stop step: the last value stands in.
    far = _stopped(5, [0.2, 0.3, 0.4, 0.5, 0.6])
    assert early_stopped_values([*done, far], ["acc"], "predicted") == {5: {"acc": 0.6}}
    # A metric the trial never reported is left out; no value at all, no entry.
    assert early_stopped_values([_stopped(6, [0.2])], ["loss"], "last_value") == {}


def test_early_stopped_values_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValidationError, match="early_stopped must be one of") as e:
        early_stopped_values([], ["acc"], "impute")
    assert e.value.field == "early_stopped"
