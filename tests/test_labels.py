"""Label rules: 90+ DPD within the performance window, indeterminates, outcomes override."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from models.labels import BAD, GOOD, INDETERMINATE, LabelParams, label_loans

ISSUED = dt.date(2024, 1, 1)
DUE = dt.date(2024, 2, 1)
OBSERVED = dt.date(2026, 1, 1)  # every 12-month window from 2024 has closed
PARAMS = LabelParams(dpd_threshold=90, performance_months=12, partial_payment_tolerance=0.01)


def _loans(*rows: tuple[str, dt.date]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "loan_id": [r[0] for r in rows],
            "segment": ["merchant"] * len(rows),
            "entity_id": [f"e{i}" for i in range(len(rows))],
            "issued_on": [r[1] for r in rows],
            "principal": [1000.0] * len(rows),
            "term_months": [12] * len(rows),
        }
    )


def _repayments(*rows: tuple[str, dt.date, dt.date | None, float]) -> pl.DataFrame:
    """(loan_id, due_on, paid_on, amount_paid) with 100 due each."""
    return pl.DataFrame(
        {
            "loan_id": [r[0] for r in rows],
            "installment": list(range(1, len(rows) + 1)),
            "due_on": [r[1] for r in rows],
            "amount_due": [100.0] * len(rows),
            "paid_on": [r[2] for r in rows],
            "amount_paid": [r[3] for r in rows],
        },
        schema={
            "loan_id": pl.String,
            "installment": pl.Int64,
            "due_on": pl.Date,
            "amount_due": pl.Float64,
            "paid_on": pl.Date,
            "amount_paid": pl.Float64,
        },
    )


def _status(loans: pl.DataFrame, repayments: pl.DataFrame, **kw: object) -> dict[str, str]:
    out = label_loans(loans, repayments, observed_until=OBSERVED, params=PARAMS, **kw)
    return dict(zip(out["loan_id"], out["status"], strict=True))


def test_89_days_late_is_good_and_90_days_late_is_bad() -> None:
    loans = _loans(("on_time", ISSUED), ("late89", ISSUED), ("late90", ISSUED), ("never", ISSUED))
    reps = _repayments(
        ("on_time", DUE, DUE, 100.0),
        ("late89", DUE, DUE + dt.timedelta(days=89), 100.0),
        ("late90", DUE, DUE + dt.timedelta(days=90), 100.0),
        ("never", DUE, None, 0.0),
    )
    assert _status(loans, reps) == {
        "on_time": GOOD,
        "late89": GOOD,
        "late90": BAD,
        "never": BAD,
    }


def test_short_payment_counts_as_unpaid_within_tolerance_as_paid() -> None:
    loans = _loans(("short", ISSUED), ("cents", ISSUED))
    reps = _repayments(("short", DUE, DUE, 90.0), ("cents", DUE, DUE, 99.995))
    assert _status(loans, reps) == {"short": BAD, "cents": GOOD}


def test_open_window_is_indeterminate_with_null_bad() -> None:
    recent = OBSERVED - dt.timedelta(days=100)  # window ends after the log
    loans = _loans(("old", ISSUED), ("recent", recent))
    reps = _repayments(("old", DUE, DUE, 100.0), ("recent", recent, None, 0.0))
    out = label_loans(loans, reps, observed_until=OBSERVED, params=PARAMS).sort("loan_id")
    assert out["status"].to_list() == [GOOD, INDETERMINATE]
    assert out["bad"].to_list() == [0, None]


def test_delinquency_after_the_window_is_not_bad() -> None:
    # Instalment due 11 months after issue reaches 90 DPD after the 12-month window.
    loans = _loans(("late_in_life", ISSUED))
    reps = _repayments(("late_in_life", dt.date(2024, 12, 1), None, 0.0))
    assert _status(loans, reps) == {"late_in_life": GOOD}


def test_loan_without_repayment_rows_or_outcome_is_indeterminate() -> None:
    # No instalment and no outcome: nothing says how the loan went, so it is never counted good
    # (a lender that brings outcomes instead of a schedule would otherwise train on all-good).
    out = label_loans(
        _loans(("quiet", ISSUED)), _repayments(), observed_until=OBSERVED, params=PARAMS
    )
    assert out["status"].to_list() == [INDETERMINATE]
    assert out["bad"].to_list() == [None]


def test_loan_with_an_outcome_and_no_schedule_takes_the_outcome() -> None:
    loans = _loans(("x", ISSUED), ("y", ISSUED))
    outcomes = pl.DataFrame({"loan_id": ["x", "y"], "defaulted": [True, False]})
    assert _status(loans, _repayments(), outcomes=outcomes) == {"x": BAD, "y": GOOD}


def test_outcomes_table_overrides_the_repayment_log() -> None:
    loans = _loans(("a", ISSUED), ("b", ISSUED), ("c", ISSUED))
    reps = _repayments(("a", DUE, DUE, 100.0), ("b", DUE, None, 0.0), ("c", DUE, DUE, 100.0))
    outcomes = pl.DataFrame({"loan_id": ["a", "b"], "defaulted": [True, False]})
    assert _status(loans, reps, outcomes=outcomes) == {"a": BAD, "b": GOOD, "c": GOOD}


@pytest.mark.parametrize("threshold", [30, 60])
def test_threshold_comes_from_params(threshold: int) -> None:
    loans = _loans(("late45", ISSUED))
    reps = _repayments(("late45", DUE, DUE + dt.timedelta(days=45), 100.0))
    params = PARAMS.model_copy(update={"dpd_threshold": threshold})
    out = label_loans(loans, reps, observed_until=OBSERVED, params=params)
    assert out["status"].item() == (BAD if threshold <= 45 else GOOD)
