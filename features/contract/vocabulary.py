"""The contract's vocabulary: the values its coded columns may take, and the timestamp type.

Kept apart from the table definitions so the dataframely schemas (:mod:`.schemas`, the one
definition of every table's columns) and :mod:`.tables` (what the rest of the code reads) both
use it without importing each other.
"""

from __future__ import annotations

import polars as pl

from features.contract.segments import NAMES

SEGMENTS: tuple[str, ...] = NAMES
TS = pl.Datetime("us", "UTC")

MERCHANT_TXN_KINDS: tuple[str, ...] = ("sale", "refund", "chargeback", "payout", "fee")
# Each consumer kind and the direction it implies. The first six are a wallet's words; the rest
# let a bank's account statement fit without loss (a cash withdrawal is not a purchase, penalty
# interest is not a bill). A value a lender's mapping cannot place goes to other_in / other_out
# (or quarantine, by the mapping's choice: docs/data-contract.md).
CONSUMER_KIND_DIRECTION: dict[str, str] = {
    "purchase": "out",
    "transfer_in": "in",
    "transfer_out": "out",
    "income": "in",
    "bill_payment": "out",
    "repayment": "out",
    "cash_deposit": "in",
    "cash_withdrawal": "out",
    "fee": "out",  # account, card and statement fees
    "interest_credit": "in",  # interest the account earned
    "penalty": "out",  # overdraft / penalty interest, late and returned-payment charges
    "loan_disbursement": "in",  # a loan paid into the account
    "refund": "in",
    "other_in": "in",
    "other_out": "out",
}
CONSUMER_TXN_KINDS: tuple[str, ...] = tuple(CONSUMER_KIND_DIRECTION)
DIRECTIONS: tuple[str, ...] = ("in", "out")
# The money columns of each table: amounts in the log's currency, which a source mapping's
# ``currency.scale`` brings to whole units (a log kept in cents has scale 0.01).
MONEY: dict[str, tuple[str, ...]] = {
    "merchant_transactions": ("amount",),
    "consumer_transactions": ("amount", "balance_after"),
    "loans": ("principal",),
    "repayments": ("amount_due", "amount_paid"),
}
# A null channel is "unknown" (a branch bank has none to report).
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
