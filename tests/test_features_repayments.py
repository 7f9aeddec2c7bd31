"""One definition of paid, late and delinquent, shared by the label and the features."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from features.contract.repayments import (
    RepaymentRules,
    days_past_due,
    onset_day,
    reached,
    settled,
)
from features.history import credit_history, delinquency_onset
from models.labels import BAD, LabelParams, label_loans
from tests.features_helpers import PARAMS, loans, repayments

D = dt.date
AS_OF = D(2024, 7, 1)
TOLERANCE = PARAMS.rules.tolerance
# due 2024-03-01, 100 yuan: paid in full on time / within the tolerance / short / never / late
INSTALMENTS = repayments(
    [
        ("L1", 1, D(2024, 3, 1), 100.0, D(2024, 3, 1), 100.0),
        ("L1", 2, D(2024, 3, 1), 100.0, D(2024, 3, 1), 99.995),
        ("L1", 3, D(2024, 3, 1), 100.0, D(2024, 3, 1), 50.0),
        ("L1", 4, D(2024, 3, 1), 100.0, None, None),
        ("L1", 5, D(2024, 3, 1), 100.0, D(2024, 6, 9), 100.0),
    ]
)


def test_short_payments_are_not_settled_and_stay_past_due() -> None:
    got = INSTALMENTS.select(
        settled(TOLERANCE).alias("settled"),
        days_past_due(pl.lit(AS_OF), TOLERANCE).alias("dpd"),
        reached(90, TOLERANCE).alias("reached_90"),
    )
    assert got["settled"].to_list() == [True, True, False, False, True]
    # measured at as_of unless settled before it: 122 days from 2024-03-01 to 2024-07-01
    assert got["dpd"].to_list() == [0, 0, 122, 122, 100]
    assert got["reached_90"].to_list() == [False, False, True, True, True]


def test_a_payment_on_or_after_as_of_is_not_yet_known() -> None:
    frame = repayments([("L1", 1, D(2024, 6, 1), 100.0, D(2024, 7, 1), 100.0)])
    assert frame.select(days_past_due(pl.lit(AS_OF), TOLERANCE)).item() == 30


def test_onset_is_the_first_day_an_instalment_reached_the_threshold() -> None:
    frame = INSTALMENTS.with_columns(pl.lit("E1").alias("entity_id"))
    onset = frame.group_by("entity_id").agg(onset_day(30, TOLERANCE)).item(0, 1)
    assert onset == D(2024, 3, 31)
    paid = INSTALMENTS.filter(pl.col("installment") <= 2)
    assert paid.select(onset_day(30, TOLERANCE)).item() is None


def test_label_and_features_agree_on_a_short_payment() -> None:
    rules = RepaymentRules(default_dpd=90, delinquent_dpd=30, tolerance=TOLERANCE)
    loan = loans([("L1", "merchant", "M1", D(2024, 1, 1), 300.0, 3)])
    short = repayments([("L1", 1, D(2024, 2, 1), 100.0, D(2024, 2, 5), 60.0)])
    label = label_loans(
        loan,
        short,
        observed_until=D(2025, 6, 1),
        params=LabelParams(dpd_threshold=90, partial_payment_tolerance=TOLERANCE),
    )
    assert label["status"].to_list() == [BAD]
    keys = pl.LazyFrame({"entity_id": ["M1"], "as_of": [AS_OF]})
    history = credit_history(keys, loan.lazy(), short.lazy(), "merchant", rules).collect()
    assert history["prior_dpd90_ever"].to_list() == [1]
    assert history["current_dpd"].to_list() == [(AS_OF - D(2024, 2, 1)).days]
    onset = delinquency_onset(loan.lazy(), short.lazy(), rules)
    assert onset.height == 1


@pytest.mark.parametrize(("day", "reached_30"), [(D(2024, 3, 31), False), (D(2024, 4, 1), True)])
def test_label_onset_and_history_agree_on_the_day_an_instalment_turns_late(
    day: dt.date, reached_30: bool
) -> None:
    """Due 2024-03-01, never paid: it reaches 30 days past due on 2024-03-31.

    Observed up to (not including) that day, the counterparty onset and the credit history
    say "not yet"; from the next day on both say "reached", as the label does (below).
    """
    rules = RepaymentRules(default_dpd=30, delinquent_dpd=30, tolerance=TOLERANCE)
    loan = loans([("L1", "merchant", "M1", D(2024, 2, 1), 100.0, 1)])
    unpaid = repayments([("L1", 1, D(2024, 3, 1), 100.0, None, None)])
    keys = pl.LazyFrame({"entity_id": ["M1"], "as_of": [day]})
    history = credit_history(keys, loan.lazy(), unpaid.lazy(), "merchant", rules).collect()
    onset = delinquency_onset(loan.lazy(), unpaid.lazy(), rules)["__onset"].item()
    day_number = (day - D(1900, 1, 1)).days
    assert history["prior_dpd30_count"].item() == int(reached_30)
    assert history["prior_dpd30_ever"].item() == int(reached_30)
    assert (onset < day_number) is reached_30  # how connection features read the onset


@pytest.mark.parametrize(("dpd", "status"), [(30, BAD), (31, "good")])
def test_the_label_counts_a_threshold_reached_on_the_last_observed_day(dpd: int, status) -> None:
    """Due 2024-03-01, never paid, observed up to 2024-04-01 (the window's end): 30 days past
    due is reached on 2024-03-31 (observed: bad), 31 on 2024-04-01 (not observed: good)."""
    loan = loans([("L1", "merchant", "M1", D(2024, 1, 1), 100.0, 1)])
    unpaid = repayments([("L1", 1, D(2024, 3, 1), 100.0, None, None)])
    params = LabelParams(dpd_threshold=dpd, performance_months=3, partial_payment_tolerance=0.01)
    label = label_loans(loan, unpaid, observed_until=D(2024, 4, 1), params=params)
    assert label["status"].item() == status


def test_rules_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="days past due"):
        RepaymentRules(default_dpd=0, delinquent_dpd=30, tolerance=0.01)
    with pytest.raises(ValueError, match="tolerance"):
        RepaymentRules(default_dpd=90, delinquent_dpd=30, tolerance=-1.0)


def test_a_loan_is_open_until_every_instalment_is_settled_not_until_its_last_due_date() -> None:
    rules = RepaymentRules(default_dpd=90, delinquent_dpd=30, tolerance=TOLERANCE)
    book = loans(
        [
            ("EARLY", "merchant", "M1", D(2024, 1, 1), 200.0, 2),  # repaid in full early
            ("ARREARS", "merchant", "M1", D(2023, 1, 1), 100.0, 1),  # last due passed, unpaid
            ("RUNNING", "merchant", "M1", D(2024, 5, 1), 100.0, 1),  # due after as_of
            ("DONE", "merchant", "M1", D(2023, 6, 1), 100.0, 1),  # paid on time, long ago
        ]
    )
    schedule = repayments(
        [
            ("EARLY", 1, D(2024, 8, 1), 100.0, D(2024, 2, 1), 100.0),
            ("EARLY", 2, D(2024, 9, 1), 100.0, D(2024, 2, 1), 100.0),
            ("ARREARS", 1, D(2023, 2, 1), 100.0, None, 0.0),
            ("RUNNING", 1, D(2024, 8, 1), 100.0, None, 0.0),
            ("DONE", 1, D(2023, 7, 1), 100.0, D(2023, 7, 1), 100.0),
        ]
    )
    keys = pl.LazyFrame({"entity_id": ["M1"], "as_of": [AS_OF]})
    history = credit_history(keys, book.lazy(), schedule.lazy(), "merchant", rules).collect()
    assert history["prior_loans"].to_list() == [4]
    assert history["open_loans"].to_list() == [2]  # ARREARS and RUNNING
    assert history["outstanding_due"].to_list() == [200.0]
