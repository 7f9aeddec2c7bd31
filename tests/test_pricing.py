"""Risk-based price: capped, monotone in PD, priced out exactly above the cap, hand values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.limits import LimitPolicy, loan_limits
from models.pricing import PricingPolicy, break_even_apr, risk_based_price, term_pd

POLICY = PricingPolicy(cost_of_funds=0.03, operating_cost=0.02, target_margin=0.02, max_apr=0.24)
PDS = arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1.0))


@settings(deadline=None)
@given(
    pd_=PDS,
    lgd=st.floats(0.05, 1.0),
    term=st.integers(1, 60),
    cap=st.floats(0.1, 0.36),
)
def test_price_is_capped_covers_the_floor_and_priced_out_exactly_above_it(
    pd_: np.ndarray, lgd: float, term: int, cap: float
) -> None:
    policy = POLICY.model_copy(update={"max_apr": cap})
    apr, priced_out = risk_based_price(pd_, lgd=lgd, term_months=term, policy=policy)
    floor = break_even_apr(pd_, lgd=lgd, term_months=term, policy=policy)
    assert priced_out.tolist() == (floor > cap).tolist()
    assert np.isnan(apr[priced_out]).all()
    priced = apr[~priced_out]
    assert not np.isnan(priced).any()
    assert (priced <= cap).all()
    assert (priced >= floor[~priced_out] - 1e-12).all()  # the quoted rate covers r*
    assert (priced - floor[~priced_out] < 1e-4 + 1e-12).all()  # by at most a basis point


@settings(deadline=None)
@given(pd_=PDS, lgd=st.floats(0.05, 1.0), term=st.integers(1, 60))
def test_price_rises_with_pd(pd_: np.ndarray, lgd: float, term: int) -> None:
    ordered = np.sort(pd_)
    floor = break_even_apr(ordered, lgd=lgd, term_months=term, policy=POLICY)
    assert (floor[1:] >= floor[:-1]).all()  # not np.diff: a PD of 1 breaks even at +inf
    apr, priced_out = risk_based_price(ordered, lgd=lgd, term_months=term, policy=POLICY)
    assert (np.diff(priced_out.astype(int)) >= 0).all()  # once priced out, riskier stay out
    assert (np.diff(apr[~priced_out]) >= 0).all()


def test_hand_computed_prices() -> None:
    pd_ = np.array([0.0, 0.05, 0.2, 0.21, 1.0])
    apr, priced_out = risk_based_price(pd_, lgd=0.6, term_months=12, policy=POLICY)
    # one-year term: r* = (c + PD x LGD) / (1 - PD), c = 0.03 + 0.02 + 0.02 = 0.07
    #   PD 0    -> 0.07
    #   PD 0.05 -> (0.07 + 0.03) / 0.95 = 0.105263... -> 0.1053 (rounded up to a basis point)
    #   PD 0.2  -> (0.07 + 0.12) / 0.8 = 0.2375 exactly (no spurious extra basis point)
    #   PD 0.21 -> (0.07 + 0.126) / 0.79 = 0.2481 > 0.24: priced out; PD 1: no rate covers it
    np.testing.assert_allclose(apr[:3], [0.07, 0.1053, 0.2375], rtol=0, atol=1e-12)
    assert priced_out.tolist() == [False, False, False, True, True]
    assert np.isnan(apr[3:]).all()
    # six-month term: the 12-month PD 0.1 becomes 1 - 0.9 ** 0.5 = 0.0513167 over the term;
    # r* = (0.07 x 0.5 + 0.0513167 x 0.6) / (0.9486833 x 0.5) = 0.1386975 -> 0.1387
    assert term_pd(np.array([0.1]), 6)[0] == pytest.approx(0.0513167019)
    six = risk_based_price(np.array([0.1]), lgd=0.6, term_months=6, policy=POLICY)[0]
    np.testing.assert_allclose(six, [0.1387], rtol=0, atol=1e-12)


def test_a_policy_that_cannot_price_anyone_and_bad_pds_are_refused() -> None:
    with pytest.raises(ValueError, match="expected max_apr above"):
        PricingPolicy(cost_of_funds=0.2, operating_cost=0.05, target_margin=0.0, max_apr=0.24)
    with pytest.raises(ValueError, match="expected a 1-d array of PDs"):
        risk_based_price(np.array([0.1, 1.2]), lgd=0.6, term_months=12, policy=POLICY)
    with pytest.raises(ValueError, match="expected 0 < lgd"):
        risk_based_price(np.array([0.1]), lgd=0.0, term_months=12, policy=POLICY)


def test_limits_knock_out_a_priced_out_entity() -> None:
    policy = LimitPolicy(
        product_cap=200_000,
        band_multiples={"poor": 0, "fair": 1, "good": 1.5, "very_good": 2, "excellent": 3},
        expected_loss_budget=800,
        approval_cutoff=350,
        pricing=POLICY,
    )
    n = 3
    limit, binding = loan_limits(
        pd_=np.array([0.02, 0.21, 0.5]),
        score=np.array([700.0, 500.0, 400.0]),
        band=np.array(["excellent", "poor", "poor"], dtype=object),
        monthly_inflow=np.full(n, 50_000.0),
        monthly_free_cash_flow=np.full(n, 10_000.0),
        current_dpd=np.zeros(n),
        consent=np.array([True, True, False]),
        policy=policy,
    )
    assert limit[0] > 0
    assert binding.tolist()[1:] == ["priced_out", "knockout_no_consent"]  # consent comes first
    assert (limit[1:] == 0).all()
