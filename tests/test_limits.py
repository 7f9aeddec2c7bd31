"""The limit engine: bounds, knock-outs, the binding constraint, monotone in score."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.limits import CONSTRAINTS, KNOCKOUTS, LimitPolicy, loan_limits
from models.scaling import ScalingParams, pd_to_score, score_to_band

SCALING = ScalingParams()
POLICIES = {
    "merchant": LimitPolicy(
        product_cap=5_000_000,
        band_multiples={"poor": 0, "fair": 1, "good": 2, "very_good": 3, "excellent": 4},
        annual_interest_rate=0.12,
        expected_loss_budget=5000,
        rounding_step=1000,
    ),
    "consumer": LimitPolicy(
        product_cap=200_000,
        band_multiples={"poor": 0, "fair": 1, "good": 1.5, "very_good": 2, "excellent": 3},
        annual_interest_rate=0.18,
        lgd=0.7,
        expected_loss_budget=800,
    ),
}
MONEY = st.one_of(st.floats(-1e4, 1e8, allow_nan=False), st.just(np.nan))


@st.composite
def entities(draw: st.DrawFn) -> dict[str, np.ndarray]:
    n = draw(st.integers(1, 30))
    pd_ = draw(arrays(np.float64, n, elements=st.floats(1e-4, 1 - 1e-4)))
    score = pd_to_score(pd_, SCALING)
    return {
        "pd_": pd_,
        "score": score,
        "band": score_to_band(score, SCALING),
        "monthly_inflow": draw(arrays(np.float64, n, elements=MONEY)),
        "monthly_free_cash_flow": draw(arrays(np.float64, n, elements=MONEY)),
        "current_dpd": draw(
            arrays(np.float64, n, elements=st.one_of(st.floats(0, 400), st.just(np.nan)))
        ),
        "consent": draw(arrays(np.bool_, n)),
    }


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
@settings(deadline=None)
@given(rows=entities())
def test_limits_are_bounded_rounded_and_knocked_out(segment: str, rows: dict) -> None:
    policy = POLICIES[segment]
    limit, binding = loan_limits(**rows, policy=policy)
    assert (limit >= 0).all()
    assert (limit <= policy.product_cap).all()
    assert np.allclose(limit % policy.rounding_step, 0)
    assert set(binding) <= set(CONSTRAINTS) | set(KNOCKOUTS)
    no_consent = ~rows["consent"]
    delinquent = np.nan_to_num(rows["current_dpd"]) >= policy.knockout_dpd
    below = rows["score"] < policy.approval_cutoff
    knocked = no_consent | delinquent | below
    assert (limit[knocked] == 0).all()
    assert (binding[no_consent] == "knockout_no_consent").all()
    assert (binding[~no_consent & delinquent] == "knockout_delinquent").all()
    assert (binding[~no_consent & ~delinquent & below] == "below_cutoff").all()
    assert np.isin(binding[~knocked], CONSTRAINTS).all()


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
@settings(deadline=None)
@given(
    pd_=arrays(np.float64, st.integers(2, 40), elements=st.floats(1e-4, 1 - 1e-4)),
    inflow=st.floats(0, 1e8),
    free=st.floats(0, 1e8),
)
def test_limit_never_falls_as_the_score_rises_for_the_same_cash_flow(
    segment: str, pd_: np.ndarray, inflow: float, free: float
) -> None:
    pd_ = np.sort(pd_)[::-1]  # PD falling, so the score rising
    score = pd_to_score(pd_, SCALING)
    n = pd_.size
    limit, _ = loan_limits(
        pd_=pd_,
        score=score,
        band=score_to_band(score, SCALING),
        monthly_inflow=np.full(n, inflow),
        monthly_free_cash_flow=np.full(n, free),
        current_dpd=np.zeros(n),
        consent=np.ones(n, dtype=bool),
        policy=POLICIES[segment],
    )
    assert (np.diff(limit) >= 0).all()


def test_each_constraint_can_bind_and_the_arithmetic_is_exact() -> None:
    policy = LimitPolicy(
        product_cap=200_000,
        band_multiples={"poor": 0, "fair": 1, "good": 1.5, "very_good": 2, "excellent": 3},
        debt_service_ratio=0.5,
        term_months=10,
        lgd=0.5,
        expected_loss_budget=1000,
        rounding_step=100,
    )
    limit, binding = loan_limits(
        pd_=np.array([0.001, 0.001, 0.05, 0.0001]),
        score=np.array([700, 700, 560, 900]),
        band=np.array(["excellent", "excellent", "fair", "excellent"]),
        monthly_inflow=np.array([10_050.0, 1e9, 1e9, 1e9]),
        monthly_free_cash_flow=np.array([1e9, 5_000.0, 1e9, 1e9]),
        current_dpd=np.array([0, 0, 0, 0]),
        consent=np.array([True, True, True, True]),
        policy=policy,
    )
    # 3 x 10,050 = 30,150; 0.5 x 5,000 x 10 = 25,000; 1,000 / (0.05 x 0.5) = 40,000; the cap
    assert limit.tolist() == [30_100.0, 25_000.0, 40_000.0, 200_000.0]
    assert binding.tolist() == list(CONSTRAINTS)


def test_interest_shrinks_repayment_capacity() -> None:
    base = POLICIES["consumer"].model_copy(update={"annual_interest_rate": 0.0})
    assert base.annuity_factor == base.term_months
    assert 0 < POLICIES["consumer"].annuity_factor < base.term_months


def test_the_policy_must_agree_with_the_band_table() -> None:
    args = (SCALING.band_order, SCALING.min_score, SCALING.max_score)
    for policy in POLICIES.values():
        policy.check_bands(*args)
    falling = POLICIES["consumer"].model_copy(
        update={"band_multiples": {**POLICIES["consumer"].band_multiples, "excellent": 0.5}}
    )
    with pytest.raises(ValueError, match="non-decreasing"):
        falling.check_bands(*args)
    missing = POLICIES["consumer"].model_copy(update={"band_multiples": {"poor": 0.0}})
    with pytest.raises(ValueError, match="exactly the bands"):
        missing.check_bands(*args)
    with pytest.raises(ValueError, match="approval_cutoff"):
        POLICIES["consumer"].model_copy(update={"approval_cutoff": 100}).check_bands(*args)
    with pytest.raises(ValueError, match=">= 0"):
        LimitPolicy(product_cap=1, band_multiples={"poor": -1.0}, expected_loss_budget=1)


def test_params_yaml_policies_agree_with_the_band_table() -> None:
    from pathlib import Path

    from pipeline.config import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    for policy in settings.limits.values():
        policy.check_bands(
            settings.scaling.band_order, settings.scaling.min_score, settings.scaling.max_score
        )


def test_bad_inputs_are_refused() -> None:
    ok = {
        "pd_": np.array([0.1]),
        "score": np.array([600]),
        "band": np.array(["good"]),
        "monthly_inflow": np.array([1.0]),
        "monthly_free_cash_flow": np.array([1.0]),
        "current_dpd": np.array([0.0]),
        "consent": np.array([True]),
        "policy": POLICIES["consumer"],
    }
    loan_limits(**ok)
    with pytest.raises(ValueError, match="expected bands"):
        loan_limits(**{**ok, "band": np.array(["platinum"])})
    with pytest.raises(ValueError, match="expected PDs"):
        loan_limits(**{**ok, "pd_": np.array([np.nan])})
    with pytest.raises(ValueError, match="shape"):
        loan_limits(**{**ok, "monthly_inflow": np.array([1.0, 2.0])})


def test_apply_cutoff_false_keeps_the_limit_of_a_declined_score() -> None:
    args = {
        "pd_": np.array([0.05]),
        "score": np.array([500]),
        "band": np.array(["poor"]),
        "monthly_inflow": np.array([1e5]),
        "monthly_free_cash_flow": np.array([1e5]),
        "current_dpd": np.array([0.0]),
        "consent": np.array([True]),
        "policy": POLICIES["consumer"].model_copy(
            update={"band_multiples": {**POLICIES["consumer"].band_multiples, "poor": 0.5}}
        ),
    }
    assert loan_limits(**args)[0].tolist() == [0.0]
    limit, binding = loan_limits(**args, apply_cutoff=False)
    assert limit.tolist() == [22_800.0]  # 800 / (0.05 x 0.7) = 22,857 rounded down
    assert binding.tolist() == ["expected_loss"]
