"""Point-in-time property: events at or after as_of never change a snapshot's features.

Hypothesis draws small logs for both segments (transactions, counterparties' loans and
repayments), a snapshot date, and then future changes: new events at or after as_of, changed
amounts/kinds/counterparties of events at or after as_of, loans issued at or after as_of and
repayments made at or after as_of. Every feature and policy input must be bit-for-bit equal
(the whole catalog, the cash-flow order statistics included).
Removing an event from the year before as_of must change some feature of that entity.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tests.features_helpers import (
    consumer_events,
    features,
    inputs,
    loans,
    merchant_events,
    repayments,
)

START = dt.datetime(2023, 1, 1)
AS_OF = dt.date(2024, 3, 1)
AS_OF_DT = dt.datetime(2024, 3, 1)
IDS = {"merchant": ["M0", "M1", "M2"], "consumer": ["C0", "C1", "C2"]}
OTHERS = ["C0", "C1", "C2", "C3", "M0", "M1"]
KINDS = {
    "merchant": ["sale", "sale", "sale", "refund", "chargeback", "payout", "fee"],
    # with a bank statement's kinds, so the cash-flow families (penalties, fees, cash share)
    # are drawn too; balances are drawn below zero as well (negative-balance days)
    "consumer": [
        *("purchase", "income", "transfer_in", "transfer_out", "bill_payment", "repayment"),
        *("penalty", "fee", "cash_withdrawal"),
    ],
}
PIT_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _event(segment: str, seconds: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:
    base = (
        st.sampled_from(IDS[segment]),
        seconds.map(lambda s: START + dt.timedelta(seconds=s)),
        st.sampled_from(KINDS[segment]),
        st.integers(1, 500_000).map(lambda c: c / 100),
        st.one_of(st.none(), st.sampled_from(OTHERS)),
    )
    if segment == "consumer":
        base = (*base, st.one_of(st.none(), st.integers(-50_000, 900_000).map(lambda c: c / 100)))
    return st.tuples(*base)


SPAN = int((AS_OF_DT - START).total_seconds())
PAST = st.integers(0, SPAN - 1)
LAST_YEAR = st.integers(SPAN - 364 * 86_400, SPAN - 1)
FUTURE = st.integers(SPAN, SPAN + 200 * 86_400)


@st.composite
def credit(draw: st.DrawFn) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    """Loans of entities and counterparties: (past loans, past repayments) plus future ones."""
    loan_rows, repayment_rows, future_loans, future_repayments = [], [], [], []
    for i in range(draw(st.integers(0, 4))):
        entity = draw(st.sampled_from(OTHERS + IDS["merchant"]))
        segment = "merchant" if entity.startswith("M") else "consumer"
        issued = AS_OF - dt.timedelta(days=draw(st.integers(1, 400)))
        loan_rows.append((f"L{i}", segment, entity, issued, 1000.0, 3))
        for k in range(1, 4):
            due = issued + dt.timedelta(days=30 * k)
            late = draw(st.integers(0, 120))
            paid = due + dt.timedelta(days=late)
            # a payment on or after as_of is a future event: it may move freely after as_of
            if paid >= AS_OF:
                paid = AS_OF + dt.timedelta(days=draw(st.integers(0, 60)))
                future = draw(st.one_of(st.none(), st.integers(0, 90)))
                future_paid = None if future is None else AS_OF + dt.timedelta(days=future)
            else:
                future_paid = paid
            repayment_rows.append((f"L{i}", k, due, 333.0, paid, 333.0))
            future_repayments.append((f"L{i}", k, due, 333.0, future_paid, 333.0))
    for j in range(draw(st.integers(0, 2))):
        entity = draw(st.sampled_from(OTHERS + IDS["merchant"]))
        segment = "merchant" if entity.startswith("M") else "consumer"
        issued = AS_OF + dt.timedelta(days=draw(st.integers(0, 30)))
        future_loans.append((f"F{j}", segment, entity, issued, 500.0, 1))
        due = issued + dt.timedelta(days=30)
        future_repayments.append((f"F{j}", 1, due, 505.0, None, 0.0))
    return loan_rows, repayment_rows, future_loans, future_repayments


def _frame(segment: str, rows: list[tuple]) -> pl.DataFrame:
    if segment == "merchant":
        return merchant_events(rows)
    return consumer_events(rows)


def _features(segment, rows, loan_rows, repayment_rows) -> pl.DataFrame:
    spine = pl.DataFrame({"entity_id": IDS[segment], "as_of": [AS_OF] * 3})
    data = inputs(
        segment, _frame(segment, rows), IDS[segment], loans(loan_rows), repayments(repayment_rows)
    )
    return features(segment, spine, data)


def _future_changes(segment: str) -> st.SearchStrategy:
    return st.tuples(
        st.lists(_event(segment, PAST), min_size=1, max_size=25),
        st.lists(_event(segment, FUTURE), max_size=10),
        st.lists(_event(segment, FUTURE), max_size=10),
        credit(),
    )


def _check_future_changes_nothing(segment: str, case: tuple) -> None:
    past, future, changed_future, (loan_rows, repayment_rows, future_loans, future_reps) = case
    before = _features(segment, past + future, loan_rows, repayment_rows)
    # replace the future events by others, add more, add future loans and move future payments
    after = _features(
        segment,
        changed_future + past + future[: len(future) // 2],
        loan_rows + future_loans,
        future_reps,
    )
    assert_frame_equal(before, after)


@PIT_SETTINGS
@given(case=_future_changes("merchant"))
def test_merchant_future_events_change_nothing(case: tuple) -> None:
    _check_future_changes_nothing("merchant", case)


@PIT_SETTINGS
@given(case=_future_changes("consumer"))
def test_consumer_future_events_change_nothing(case: tuple) -> None:
    _check_future_changes_nothing("consumer", case)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segment=st.sampled_from(["merchant", "consumer"]),
    data=st.data(),
)
def test_removing_a_past_event_changes_some_feature(segment: str, data: st.DataObject) -> None:
    rows = data.draw(st.lists(_event(segment, LAST_YEAR), min_size=1, max_size=20))
    drop = data.draw(st.integers(0, len(rows) - 1))
    entity = rows[drop][0]
    full = _features(segment, rows, [], [])
    less = _features(segment, rows[:drop] + rows[drop + 1 :], [], [])
    row_full = full.filter(pl.col("entity_id") == entity)
    row_less = less.filter(pl.col("entity_id") == entity)
    assert not row_full.equals(row_less)
    # and only that entity's features move (no connections among these entities' own events)
    others = pl.col("entity_id") != entity
    assert_frame_equal(full.filter(others), less.filter(others))
