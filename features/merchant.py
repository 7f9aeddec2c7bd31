"""Merchant features: one decorated function per output column."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from features.catalog import feature
from features.common import (
    MONTH_BLOCK_DAYS,
    MONTH_BLOCKS,
    active_blocks,
    block_cv,
    credit_history,
    identity,
    safe_ratio,
)
from features.engine import AS_OF, DAY, ENTITY, Inputs, block_sums, daily_buckets, window_sums
from features.engine import read_at_boundaries as read_at

_kind = pl.col("kind")
_amount = pl.col("amount")

DAILY_SUMS: dict[str, pl.Expr] = {
    "sale_cnt": (_kind == "sale").sum(),
    "sale_amt": _amount.filter(_kind == "sale").sum(),
    "refund_amt": _amount.filter(_kind == "refund").sum(),
    "chargeback_cnt": (_kind == "chargeback").sum(),
    "sale_day": (_kind == "sale").any().cast(pl.Int32),
}


def aggregates(keys: pl.LazyFrame, inputs: Inputs, *, windows: Sequence[int]) -> pl.LazyFrame:
    """The per-snapshot aggregate frame the merchant features are expressions over."""
    daily = daily_buckets(inputs.events, DAILY_SUMS).with_columns(
        pl.when(pl.col("sale_cnt") > 0).then(pl.col(DAY)).alias("last_sale_day")
    )
    # Distinct buyers: each (merchant, buyer) pair counts once, on the day it was first seen.
    first_buyers = (
        inputs.events.filter(pl.col("buyer_id").is_not_null() & (_kind == "sale"))
        .group_by(ENTITY, "buyer_id")
        .agg(pl.col("ts").min().dt.date().alias(DAY))
        .group_by(ENTITY, DAY)
        .agg(pl.len().alias("new_buyers"))
    )
    daily = daily.join(first_buyers, on=[ENTITY, DAY], how="full", coalesce=True).with_columns(
        pl.col(c).fill_null(0) for c in [*DAILY_SUMS, "new_buyers"]
    )
    sums = [*DAILY_SUMS, "new_buyers"]
    offsets = {*windows, *(k * MONTH_BLOCK_DAYS for k in range(MONTH_BLOCKS + 1))}
    read = read_at(daily, keys, sums=sums, offsets=sorted(offsets), levels=["last_sale_day"])
    read = read.with_columns(
        *window_sums(sums, windows),
        *block_sums(["sale_amt"], MONTH_BLOCK_DAYS, MONTH_BLOCKS),
        pl.col("new_buyers__c0").alias("buyers_ever"),
    )
    return read.join(
        credit_history(keys, inputs.loans, inputs.repayments, "merchant"), on=[ENTITY, AS_OF]
    ).join(identity(keys, inputs.entities, "onboarded_on"), on=[ENTITY, AS_OF])


NET_MARGIN = 0.2  # share of net sales assumed free to service debt (no cost data in the log)


def policy_inputs() -> list[pl.Expr]:
    """Cash-flow and delinquency inputs of the limit engine (not model features)."""
    inflow = ((pl.col("sale_amt_90d") - pl.col("refund_amt_90d")) / 3).clip(lower_bound=0)
    return [
        inflow.alias("monthly_inflow"),
        (inflow * NET_MARGIN).alias("monthly_free_cash_flow"),
        pl.col("current_dpd"),
    ]


@feature(
    segment="merchant",
    dimension="ability_to_pay",
    window_days=90,
    monotone=1,
    reason="low sales over the last 90 days",
)
def sales_amount_90d() -> pl.Expr:
    """Total sales (yuan) in the 90 days before as_of."""
    return pl.col("sale_amt_90d")


@feature(
    segment="merchant",
    dimension="ability_to_pay",
    window_days=30,
    monotone=1,
    reason="low sales over the last 30 days",
)
def sales_amount_30d() -> pl.Expr:
    """Total sales (yuan) in the 30 days before as_of."""
    return pl.col("sale_amt_30d")


@feature(
    segment="merchant",
    dimension="behaviour",
    window_days=180,
    monotone=1,
    reason="sales have fallen recently",
)
def sales_trend_30d_180d() -> pl.Expr:
    """Sales of the last 30 days over the average 30 days of the last 180 (1 = flat)."""
    return safe_ratio(pl.col("sale_amt_30d"), pl.col("sale_amt_180d") / 6)


@feature(
    segment="merchant",
    dimension="behaviour",
    window_days=180,
    monotone=-1,
    reason="sales are volatile from month to month",
)
def sales_cv_6m() -> pl.Expr:
    """Coefficient of variation of sales over the last six 30-day blocks."""
    return block_cv("sale_amt")


@feature(
    segment="merchant",
    dimension="ability_to_pay",
    window_days=90,
    monotone=-1,
    reason="a high share of recent sales were refunded",
)
def refund_rate_90d() -> pl.Expr:
    """Refunded amount over sales amount in the last 90 days."""
    return safe_ratio(pl.col("refund_amt_90d"), pl.col("sale_amt_90d"))


@feature(
    segment="merchant",
    dimension="behaviour",
    window_days=90,
    monotone=-1,
    reason="many recent chargebacks",
)
def chargeback_rate_90d() -> pl.Expr:
    """Chargebacks per sale in the last 90 days."""
    return safe_ratio(pl.col("chargeback_cnt_90d"), pl.col("sale_cnt_90d"))


@feature(
    segment="merchant",
    dimension="behaviour",
    window_days=90,
    monotone=1,
    reason="few trading days recently",
)
def active_days_90d() -> pl.Expr:
    """Days with at least one sale in the last 90 days."""
    return pl.col("sale_day_90d")


@feature(
    segment="merchant",
    dimension="behaviour",
    window_days=180,
    monotone=1,
    reason="trading in few of the last six months",
)
def active_months_6m() -> pl.Expr:
    """Number of the last six 30-day blocks with any sales."""
    return active_blocks("sale_amt")


@feature(
    segment="merchant",
    dimension="behaviour",
    monotone=-1,
    reason="no sales for a long time",
)
def days_since_last_sale() -> pl.Expr:
    """Days between the last sale before as_of and as_of (null if never)."""
    return (pl.col(AS_OF) - pl.col("last_sale_day")).dt.total_days()


@feature(
    segment="merchant",
    dimension="identity",
    monotone=1,
    reason="short time on the platform",
)
def tenure_days() -> pl.Expr:
    """Days since the merchant was onboarded."""
    return pl.col("tenure_days")


@feature(
    segment="merchant",
    dimension="credit_history",
    monotone=0,
    reason="number of earlier loans",
)
def prior_loans() -> pl.Expr:
    """Loans issued to the merchant before as_of."""
    return pl.col("prior_loans")


@feature(
    segment="merchant",
    dimension="credit_history",
    monotone=-1,
    reason="late repayments on earlier loans",
)
def prior_max_dpd() -> pl.Expr:
    """Worst days past due on earlier instalments, as observed before as_of."""
    return pl.col("prior_max_dpd")


@feature(
    segment="merchant",
    dimension="connections",
    monotone=1,
    reason="a small customer base",
)
def buyers_ever() -> pl.Expr:
    """Distinct buyers the merchant sold to before as_of."""
    return pl.col("buyers_ever")
