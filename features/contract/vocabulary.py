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
