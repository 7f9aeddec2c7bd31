"""Aggregates shared by both segments: credit history and identity."""

from __future__ import annotations

import polars as pl

from features.engine import AS_OF, ENTITY

MONTH_BLOCK_DAYS = 30
MONTH_BLOCKS = 6


def credit_history(
    keys: pl.LazyFrame, loans: pl.LazyFrame, repayments: pl.LazyFrame, segment: str
) -> pl.LazyFrame:
    """Earlier loans and their repayment behaviour as observable strictly before as_of.

    An instalment counts once it fell due before as_of; its days past due are measured at
    ``min(paid_on, as_of)``, so a repayment made on or after as_of is not yet known.
    """
    seg_loans = loans.filter(pl.col("segment") == segment).select(
        "loan_id", pl.col("entity_id").alias(ENTITY), "issued_on"
    )
    prior = (
        keys.join(seg_loans, on=ENTITY)
        .filter(pl.col("issued_on") < pl.col(AS_OF))
        .group_by(ENTITY, AS_OF)
        .agg(pl.len().cast(pl.Int32).alias("prior_loans"))
    )
    observed_at = pl.min_horizontal(pl.col("paid_on").fill_null(pl.col(AS_OF)), pl.col(AS_OF))
    dpd = (observed_at - pl.col("due_on")).dt.total_days().clip(lower_bound=0)
    installments = (
        repayments.select("loan_id", "due_on", "paid_on")
        .join(seg_loans.select("loan_id", ENTITY), on="loan_id")
        .drop("loan_id")
    )
    history = (
        keys.join(installments, on=ENTITY)
        .filter(pl.col("due_on") < pl.col(AS_OF))
        .with_columns(dpd.alias("dpd"))
        .group_by(ENTITY, AS_OF)
        .agg(
            pl.col("dpd").max().alias("prior_max_dpd"),
            (pl.col("dpd") > 0).mean().alias("prior_late_share"),
            pl.len().alias("prior_installments_due"),
            pl.col("dpd")
            .filter(pl.col("paid_on").is_null() | (pl.col("paid_on") >= pl.col(AS_OF)))
            .max()
            .alias("current_dpd"),
        )
    )
    return (
        keys.join(prior, on=[ENTITY, AS_OF], how="left")
        .join(history, on=[ENTITY, AS_OF], how="left")
        .with_columns(
            pl.col("prior_loans").fill_null(0),
            pl.col("prior_max_dpd").fill_null(0),
            pl.col("prior_late_share").fill_null(0.0),
            pl.col("prior_installments_due").fill_null(0),
            pl.col("current_dpd").fill_null(0),
        )
    )


def identity(keys: pl.LazyFrame, entities: pl.LazyFrame, since_column: str) -> pl.LazyFrame:
    """Tenure in days at as_of, plus the entity's static attributes."""
    return (
        keys.join(entities, on=ENTITY, how="left")
        .with_columns((pl.col(AS_OF) - pl.col(since_column)).dt.total_days().alias("tenure_days"))
        .drop(since_column)
    )


def safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator``, null where the denominator is zero or null."""
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def block_cv(column: str, blocks: int = MONTH_BLOCKS) -> pl.Expr:
    """Coefficient of variation of a column's month-like block sums (null on no activity)."""
    values = [pl.col(f"{column}_b{k}") for k in range(blocks)]
    mean = pl.mean_horizontal(values)
    std = (pl.sum_horizontal([(v - mean) ** 2 for v in values]) / (blocks - 1)).sqrt()
    return safe_ratio(std, mean)


def active_blocks(column: str, blocks: int = MONTH_BLOCKS) -> pl.Expr:
    """How many of the last month-like blocks had any of the column."""
    return pl.sum_horizontal([(pl.col(f"{column}_b{k}") > 0).cast(pl.Int32) for k in range(blocks)])
