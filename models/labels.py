"""Loan labels from the repayment log.

A loan is bad when any instalment reaches ``dpd_threshold`` days past due within the
``performance_months`` after issue. Loans whose performance window has not closed by the end of
the observed log are indeterminate and are not trained or evaluated on. A lender that already has
labels can supply an outcomes table instead; it takes precedence for the loans it names. A loan
with neither an instalment in the repayment log nor an outcome has no evidence of how it went:
it is indeterminate, never counted good.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from features.contract.repayments import reached_before, reached_on

GOOD, BAD, INDETERMINATE = "good", "bad", "indeterminate"


class LabelParams(BaseModel):
    """The label definition."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    dpd_threshold: int = Field(90, gt=0)
    performance_months: int = Field(12, gt=0)
    partial_payment_tolerance: float = Field(0.01, ge=0)


def label_loans(
    loans: pl.DataFrame,
    repayments: pl.DataFrame,
    *,
    observed_until: dt.date,
    params: LabelParams,
    outcomes: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Label every loan good, bad or indeterminate.

    ``observed_until`` is the first day not covered by the log. An instalment paid short of its
    amount due (beyond the tolerance) counts as unpaid: the rules are
    :mod:`features.contract.repayments`, shared with the credit-history features. Returns the
    loans with ``status`` and ``bad`` (1/0, null when indeterminate).
    """
    window_end = pl.col("issued_on").dt.offset_by(f"{params.performance_months}mo")
    reached_at = reached_on(params.dpd_threshold)
    # The instalment reached the threshold if it was still not settled on the day it would
    # reach it (see features.contract.repayments) and that day was observed and falls inside
    # the half-open performance window [issued_on, window_end).
    reached_threshold = reached_before(
        params.dpd_threshold, params.partial_payment_tolerance, observed_until
    ) & (reached_at < window_end)
    bad_loans = (
        repayments.join(loans.select("loan_id", "issued_on"), on="loan_id")
        .filter(reached_threshold)
        .select("loan_id")
        .unique()
        .with_columns(pl.lit(True).alias("_bad"))
    )
    scheduled = repayments["loan_id"].unique().implode()
    labelled = loans.join(bad_loans, on="loan_id", how="left").with_columns(
        pl.when((window_end > observed_until) | ~pl.col("loan_id").is_in(scheduled))
        .then(pl.lit(INDETERMINATE))
        .when(pl.col("_bad").fill_null(False))
        .then(pl.lit(BAD))
        .otherwise(pl.lit(GOOD))
        .alias("status")
    )
    if outcomes is not None and outcomes.height:
        labelled = (
            labelled.join(outcomes.select("loan_id", "defaulted"), on="loan_id", how="left")
            .with_columns(
                pl.when(pl.col("defaulted").is_null())
                .then(pl.col("status"))
                .when(pl.col("defaulted"))
                .then(pl.lit(BAD))
                .otherwise(pl.lit(GOOD))
                .alias("status")
            )
            .drop("defaulted")
        )
    return labelled.drop("_bad").with_columns(
        pl.when(pl.col("status") == INDETERMINATE)
        .then(None)
        .otherwise((pl.col("status") == BAD).cast(pl.Int8))
        .alias("bad")
    )
