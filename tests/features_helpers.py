"""Tiny hand-made logs for the feature tests (in memory, contract columns only)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from features.build import DefinitionParams, Inputs, build
from features.contract.repayments import RepaymentRules
from features.contract.vocabulary import CONSUMER_KIND_DIRECTION
from features.definitions import definitions

UTC = pl.Datetime("us", "UTC")
AS_OF = dt.date(2024, 7, 1)
# Today's params: the features' windows, the label's thresholds, the net margin, low balance,
# the products' annual rates (limits).
PARAMS = DefinitionParams(
    windows=(7, 30, 90, 180, 365),
    rules=RepaymentRules(default_dpd=90, delinquent_dpd=30, tolerance=0.01),
    merchant_net_margin=0.2,
    consumer_low_balance_share=0.25,
    annual_interest_rates={"merchant": 0.12, "consumer": 0.18},
)
# The loan asked for, added by :func:`features` to a spine that carries none.
LOAN = {"principal": 6000.0, "term_months": 12}


def with_loan(spine: pl.DataFrame) -> pl.DataFrame:
    """``spine`` with the :data:`LOAN` asked for where it carries none."""
    return spine.with_columns(
        pl.lit(value).alias(name) for name, value in LOAN.items() if name not in spine.columns
    )


def merchant_events(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (merchant, ts, kind, amount, buyer)."""
    return pl.DataFrame(
        rows,
        schema={
            "entity_id": pl.String,
            "ts": pl.Datetime("us"),
            "kind": pl.String,
            "amount": pl.Float64,
            "buyer_id": pl.String,
        },
        orient="row",
    ).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"),
        pl.lit("app").alias("channel"),
        pl.format("T{}", pl.int_range(pl.len())).alias("txn_id"),
    )


def consumer_events(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (consumer, ts, kind, amount, counterparty, balance_after).

    Each row's direction is its kind's, from the contract's vocabulary (an unknown kind fails).
    """
    return pl.DataFrame(
        rows,
        schema={
            "entity_id": pl.String,
            "ts": pl.Datetime("us"),
            "kind": pl.String,
            "amount": pl.Float64,
            "counterparty_id": pl.String,
            "balance_after": pl.Float64,
        },
        orient="row",
    ).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"),
        pl.col("kind").replace_strict(CONSUMER_KIND_DIRECTION).alias("direction"),
        pl.lit("app").alias("channel"),
        pl.format("T{}", pl.int_range(pl.len())).alias("txn_id"),
    )


def loans(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (loan_id, segment, entity_id, issued_on, principal, term_months)."""
    return pl.DataFrame(
        rows,
        schema={
            "loan_id": pl.String,
            "segment": pl.String,
            "entity_id": pl.String,
            "issued_on": pl.Date,
            "principal": pl.Float64,
            "term_months": pl.Int32,
        },
        orient="row",
    )


def repayments(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (loan_id, installment, due_on, amount_due, paid_on, amount_paid)."""
    return pl.DataFrame(
        rows,
        schema={
            "loan_id": pl.String,
            "installment": pl.Int32,
            "due_on": pl.Date,
            "amount_due": pl.Float64,
            "paid_on": pl.Date,
            "amount_paid": pl.Float64,
        },
        orient="row",
    )


def entities(ids: list[str], since: dt.date = dt.date(2022, 1, 1)) -> pl.DataFrame:
    """An entity table with both segments' attribute columns."""
    return pl.DataFrame(
        {
            "entity_id": pl.Series(ids, dtype=pl.String),
            "onboarded_on": pl.Series([since] * len(ids), dtype=pl.Date),
            "registered_on": pl.Series([since] * len(ids), dtype=pl.Date),
            "birth_year": pl.Series([1990] * len(ids), dtype=pl.Int32),
            "consent": pl.Series([True] * len(ids), dtype=pl.Boolean),
        }
    )


def inputs(
    segment: str,
    events: pl.DataFrame,
    ids: list[str],
    loan_rows: pl.DataFrame | None = None,
    repayment_rows: pl.DataFrame | None = None,
) -> Inputs:
    """Inputs for one segment from in-memory frames."""
    ents = entities(ids)
    ents = ents.drop("registered_on" if segment == "merchant" else "onboarded_on")
    return Inputs(
        events=events.lazy(),
        entities=ents.lazy(),
        loans=(loan_rows if loan_rows is not None else loans([])).lazy(),
        repayments=(repayment_rows if repayment_rows is not None else repayments([])).lazy(),
    )


def features(
    segment: str,
    spine: pl.DataFrame,
    data: Inputs,
    *,
    params: DefinitionParams = PARAMS,
    chunks: int = 1,
    streaming: bool = False,
) -> pl.DataFrame:
    """The segment's features for a spine under ``params`` (today's by default).

    A spine without the loan asked for gets :data:`LOAN`.
    """
    return build(
        definitions(segment, params), with_loan(spine), data, chunks=chunks, streaming=streaming
    )
