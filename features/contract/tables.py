"""The input contract: the tables, columns and types users shape their logs to.

The synthetic world writes exactly these tables, validation enforces them, and the feature
jobs read nothing else. Money is yuan (CNY) as float64 rounded to 2 decimals; timestamps are
UTC; identifiers are strings. The human-readable version of this contract is
``docs/data-contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.contract.segments import NAMES
from features.contract.segments import SEGMENTS as _SEGMENTS

TS = pl.Datetime("us", "UTC")

MERCHANT_TXN_KINDS: tuple[str, ...] = ("sale", "refund", "chargeback", "payout", "fee")
CONSUMER_TXN_KINDS: tuple[str, ...] = (
    "purchase",
    "transfer_in",
    "transfer_out",
    "income",
    "bill_payment",
    "repayment",
)
CONSUMER_KIND_DIRECTION: dict[str, str] = {
    "purchase": "out",
    "transfer_in": "in",
    "transfer_out": "out",
    "income": "in",
    "bill_payment": "out",
    "repayment": "out",
}
DIRECTIONS: tuple[str, ...] = ("in", "out")
SEGMENTS: tuple[str, ...] = NAMES
CHANNELS: tuple[str, ...] = ("app", "web", "pos", "mini_program")
# Suggested (not enforced) values: the synthetic world uses these; users may bring their own.
INDUSTRIES: tuple[str, ...] = (
    "apparel",
    "beauty",
    "electronics",
    "food",
    "home",
    "agriculture",
    "services",
    "other_retail",
)
REGIONS: tuple[str, ...] = (
    "guangdong",
    "zhejiang",
    "jiangsu",
    "shandong",
    "henan",
    "sichuan",
    "hubei",
    "fujian",
    "hebei",
    "shanghai",
    "beijing",
    "other",
)


@dataclass(frozen=True)
class Table:
    """One table of the contract: its columns, their types and its key."""

    name: str
    columns: dict[str, pl.DataType]
    key: tuple[str, ...]
    nullable: tuple[str, ...] = ()
    optional: bool = False

    @property
    def schema(self) -> pl.Schema:
        """The polars schema of the table, columns in contract order."""
        return pl.Schema(self.columns)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "merchants",
            {
                "merchant_id": pl.String(),
                "onboarded_on": pl.Date(),
                "industry": pl.String(),
                "region": pl.String(),
                "consent": pl.Boolean(),
            },
            key=("merchant_id",),
        ),
        Table(
            "consumers",
            {
                "consumer_id": pl.String(),
                "registered_on": pl.Date(),
                "region": pl.String(),
                "birth_year": pl.Int32(),
                "consent": pl.Boolean(),
            },
            key=("consumer_id",),
        ),
        Table(
            "merchant_transactions",
            {
                "txn_id": pl.String(),
                "merchant_id": pl.String(),
                "ts": TS,
                "kind": pl.String(),
                "amount": pl.Float64(),
                "buyer_id": pl.String(),
                "channel": pl.String(),
            },
            key=("txn_id",),
            nullable=("buyer_id",),
        ),
        Table(
            "consumer_transactions",
            {
                "txn_id": pl.String(),
                "consumer_id": pl.String(),
                "ts": TS,
                "kind": pl.String(),
                "direction": pl.String(),
                "amount": pl.Float64(),
                "counterparty_id": pl.String(),
                "channel": pl.String(),
                "balance_after": pl.Float64(),
            },
            key=("txn_id",),
            nullable=("counterparty_id", "balance_after"),
        ),
        Table(
            "loans",
            {
                "loan_id": pl.String(),
                "segment": pl.String(),
                "entity_id": pl.String(),
                "issued_on": pl.Date(),
                "principal": pl.Float64(),
                "term_months": pl.Int32(),
            },
            key=("loan_id",),
        ),
        Table(
            "repayments",
            {
                "loan_id": pl.String(),
                "installment": pl.Int32(),
                "due_on": pl.Date(),
                "amount_due": pl.Float64(),
                "paid_on": pl.Date(),
                "amount_paid": pl.Float64(),
            },
            key=("loan_id", "installment"),
            nullable=("paid_on",),
        ),
        Table(
            "outcomes",
            {"loan_id": pl.String(), "defaulted": pl.Boolean()},
            key=("loan_id",),
            optional=True,
        ),
    )
}

# Per-segment table and column names, derived from features.contract.segments.
ENTITY_TABLE: dict[str, str] = {n: s.entity_table for n, s in _SEGMENTS.items()}
ENTITY_ID: dict[str, str] = {n: s.entity_id for n, s in _SEGMENTS.items()}
TXN_TABLE: dict[str, str] = {n: s.txn_table for n, s in _SEGMENTS.items()}
