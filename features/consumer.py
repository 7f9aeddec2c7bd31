"""Consumer features: one decorated function per output column."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from features.catalog import feature
from features.common import (
    MONTH_BLOCK_DAYS,
    MONTH_BLOCKS,
    active_blocks,
    credit_history,
    identity,
    safe_ratio,
)
from features.engine import AS_OF, DAY, ENTITY, Inputs, block_sums, daily_buckets, window_sums
from features.engine import read_at_boundaries as read_at

_kind = pl.col("kind")
_amount = pl.col("amount")

DAILY_SUMS: dict[str, pl.Expr] = {
    "txn_cnt": pl.len(),
    "income_amt": _amount.filter(_kind == "income").sum(),
    "in_amt": _amount.filter(pl.col("direction") == "in").sum(),
    "out_amt": _amount.filter(pl.col("direction") == "out").sum(),
    "purchase_amt": _amount.filter(_kind == "purchase").sum(),
    "bill_cnt": (_kind == "bill_payment").sum(),
}


def aggregates(keys: pl.LazyFrame, inputs: Inputs, *, windows: Sequence[int]) -> pl.LazyFrame:
    """The per-snapshot aggregate frame the consumer features are expressions over."""
    daily = daily_buckets(
        inputs.events,
        {
            **DAILY_SUMS,
            "balance": pl.col("balance_after").sort_by("ts").drop_nulls().last(),
        },
    ).with_columns(pl.col(DAY).alias("last_txn_day"))
    first_counterparties = (
        inputs.events.filter(pl.col("counterparty_id").is_not_null())
        .group_by(ENTITY, "counterparty_id")
        .agg(pl.col("ts").min().dt.date().alias(DAY))
        .group_by(ENTITY, DAY)
        .agg(pl.len().alias("new_counterparties"))
    )
    daily = daily.join(
        first_counterparties, on=[ENTITY, DAY], how="full", coalesce=True
    ).with_columns(pl.col(c).fill_null(0) for c in [*DAILY_SUMS, "new_counterparties"])
    sums = [*DAILY_SUMS, "new_counterparties"]
    offsets = {*windows, *(k * MONTH_BLOCK_DAYS for k in range(MONTH_BLOCKS + 1))}
    read = read_at(
        daily, keys, sums=sums, offsets=sorted(offsets), levels=["balance", "last_txn_day"]
    )
    read = read.with_columns(
        *window_sums(sums, windows),
        *block_sums(["income_amt"], MONTH_BLOCK_DAYS, MONTH_BLOCKS),
        pl.col("new_counterparties__c0").alias("counterparties_ever"),
    )
    return read.join(
        credit_history(keys, inputs.loans, inputs.repayments, "consumer"), on=[ENTITY, AS_OF]
    ).join(identity(keys, inputs.entities, "registered_on"), on=[ENTITY, AS_OF])


def policy_inputs() -> list[pl.Expr]:
    """Cash-flow and delinquency inputs of the limit engine (not model features)."""
    return [
        (pl.col("income_amt_90d") / 3).alias("monthly_inflow"),
        ((pl.col("in_amt_90d") - pl.col("out_amt_90d")) / 3)
        .clip(lower_bound=0)
        .alias("monthly_free_cash_flow"),
        pl.col("current_dpd"),
    ]


@feature(
    segment="consumer",
    dimension="ability_to_pay",
    window_days=90,
    monotone=1,
    reason="low income over the last 90 days",
)
def income_90d() -> pl.Expr:
    """Income received (yuan) in the 90 days before as_of."""
    return pl.col("income_amt_90d")


@feature(
    segment="consumer",
    dimension="ability_to_pay",
    window_days=180,
    monotone=1,
    reason="income did not arrive regularly",
)
def income_months_6m() -> pl.Expr:
    """Number of the last six 30-day blocks in which any income arrived."""
    return active_blocks("income_amt")


@feature(
    segment="consumer",
    dimension="ability_to_pay",
    window_days=90,
    monotone=-1,
    reason="spending is high relative to money coming in",
)
def outflow_to_inflow_90d() -> pl.Expr:
    """Money out over money in during the last 90 days."""
    return safe_ratio(pl.col("out_amt_90d"), pl.col("in_amt_90d"))


@feature(
    segment="consumer",
    dimension="ability_to_pay",
    monotone=1,
    reason="low account balance",
)
def last_balance() -> pl.Expr:
    """Account balance after the last transaction before as_of (null if never reported)."""
    return pl.col("balance")


@feature(
    segment="consumer",
    dimension="behaviour",
    window_days=30,
    monotone=0,
    reason="purchase activity in the last 30 days",
)
def purchase_amount_30d() -> pl.Expr:
    """Purchases (yuan) in the 30 days before as_of."""
    return pl.col("purchase_amt_30d")


@feature(
    segment="consumer",
    dimension="behaviour",
    window_days=90,
    monotone=1,
    reason="few bills paid recently",
)
def bill_payments_90d() -> pl.Expr:
    """Bill payments made in the 90 days before as_of."""
    return pl.col("bill_cnt_90d")


@feature(
    segment="consumer",
    dimension="behaviour",
    monotone=-1,
    reason="no account activity for a long time",
)
def days_since_last_txn() -> pl.Expr:
    """Days between the last transaction before as_of and as_of (null if never)."""
    return (pl.col(AS_OF) - pl.col("last_txn_day")).dt.total_days()


@feature(
    segment="consumer",
    dimension="identity",
    monotone=1,
    reason="recently registered",
)
def tenure_days() -> pl.Expr:
    """Days since the consumer registered."""
    return pl.col("tenure_days")


@feature(
    segment="consumer",
    dimension="identity",
    monotone=0,
    reason="age",
)
def age_years() -> pl.Expr:
    """Age in whole years at as_of, from the birth year."""
    return pl.col(AS_OF).dt.year() - pl.col("birth_year")


@feature(
    segment="consumer",
    dimension="credit_history",
    monotone=0,
    reason="number of earlier loans",
)
def prior_loans() -> pl.Expr:
    """Loans issued to the consumer before as_of."""
    return pl.col("prior_loans")


@feature(
    segment="consumer",
    dimension="credit_history",
    monotone=-1,
    reason="late repayments on earlier loans",
)
def prior_max_dpd() -> pl.Expr:
    """Worst days past due on earlier instalments, as observed before as_of."""
    return pl.col("prior_max_dpd")


@feature(
    segment="consumer",
    dimension="connections",
    monotone=0,
    reason="size of the payment network",
)
def counterparties_ever() -> pl.Expr:
    """Distinct counterparties the consumer transacted with before as_of."""
    return pl.col("counterparties_ever")
