"""dataframely schemas enforcing the input contract, one per table.

These are the rules that can be checked on one table alone: column types, nullability, positive
amounts, allowed values (kinds, directions, segments, channels), unique keys and in-row
consistency. Rules that need another table (unknown entities or loans, events before an entity
existed, payments before issue) or the clock (timestamps in the future) are applied by
``pipeline.validate``. These classes are the one definition of every table's columns, dtypes,
keys and nullability: ``features.contract.tables`` reads them from here, and
``docs/data-contract.md`` is the human-readable version.

Rule names are chosen so that, after :func:`rule_name`, the summary reads plainly:
``duplicate_id``, ``null_<column>``, ``non_positive_<column>``, ``unknown_kind`` and so on.
"""

from __future__ import annotations

import dataframely as dy
import polars as pl

from features.contract import vocabulary as contract

# Plausible birth years: older than this are typos, younger cannot hold an account.
MIN_BIRTH_YEAR = 1900
MAX_BIRTH_YEAR = 2015
MAX_TERM_MONTHS = 360

# Columns a lender may leave out of its file altogether (not merely null in some rows): where
# the lender does not hold them, validation reads them as null rather than as schema drift.
# ``gender`` is held for the fairness report only (a protected attribute where the lender holds
# it): no feature reads it, and a lender without it is not refused.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "merchants": ("gender",),
    "consumers": ("gender",),
}


def _one_of(values: tuple[str, ...], name: str) -> dict[str, object]:
    return {name: lambda col: col.is_in(list(values))}


class MerchantSchema(dy.Schema):
    """``merchants``: one row per merchant."""

    merchant_id = dy.String(primary_key=True, min_length=1)
    onboarded_on = dy.Date()
    industry = dy.String(min_length=1)
    region = dy.String(min_length=1)
    consent = dy.Bool()
    # The principal owner's gender, where the lender holds it (fairness report only).
    gender = dy.String(nullable=True, min_length=1)


class ConsumerSchema(dy.Schema):
    """``consumers``: one row per consumer."""

    consumer_id = dy.String(primary_key=True, min_length=1)
    registered_on = dy.Date()
    region = dy.String(min_length=1)
    # Null when the lender does not hold it: age features are then unknown, not guessed.
    birth_year = dy.Int32(nullable=True, min=MIN_BIRTH_YEAR, max=MAX_BIRTH_YEAR)
    consent = dy.Bool()
    # Where the lender holds it (fairness report only; never a feature).
    gender = dy.String(nullable=True, min_length=1)


class MerchantTransactionSchema(dy.Schema):
    """``merchant_transactions``: sales, refunds, chargebacks, payouts and fees."""

    txn_id = dy.String(primary_key=True, min_length=1)
    merchant_id = dy.String(min_length=1)
    ts = dy.Datetime(time_zone="UTC", time_unit="us")
    kind = dy.String(check=_one_of(contract.MERCHANT_TXN_KINDS, "unknown_kind"))
    amount = dy.Float64(min_exclusive=0.0)
    buyer_id = dy.String(nullable=True)
    channel = dy.String(nullable=True, check=_one_of(contract.CHANNELS, "unknown_channel"))


class ConsumerTransactionSchema(dy.Schema):
    """``consumer_transactions``: income, purchases, bills, transfers, repayments."""

    txn_id = dy.String(primary_key=True, min_length=1)
    consumer_id = dy.String(min_length=1)
    ts = dy.Datetime(time_zone="UTC", time_unit="us")
    kind = dy.String(check=_one_of(contract.CONSUMER_TXN_KINDS, "unknown_kind"))
    direction = dy.String(check=_one_of(contract.DIRECTIONS, "unknown_direction"))
    amount = dy.Float64(min_exclusive=0.0)
    counterparty_id = dy.String(nullable=True)
    channel = dy.String(nullable=True, check=_one_of(contract.CHANNELS, "unknown_channel"))
    balance_after = dy.Float64(nullable=True)

    @dy.rule()
    def direction_mismatch(cls) -> pl.Expr:
        """The direction must be the one the kind implies (income is in, purchase is out)."""
        inward = [k for k, d in contract.CONSUMER_KIND_DIRECTION.items() if d == "in"]
        known = pl.col("kind").is_in(list(contract.CONSUMER_KIND_DIRECTION))
        # An unknown kind is reported as such, not as a direction mismatch.
        return ~known | ((pl.col("direction") == "in") == pl.col("kind").is_in(inward))


class LoanSchema(dy.Schema):
    """``loans``: one row per loan; ``entity_id`` is a merchant or consumer per ``segment``."""

    loan_id = dy.String(primary_key=True, min_length=1)
    segment = dy.String(check=_one_of(contract.SEGMENTS, "unknown_segment"))
    entity_id = dy.String(min_length=1)
    issued_on = dy.Date()
    principal = dy.Float64(min_exclusive=0.0)
    term_months = dy.Int32(min=1, max=MAX_TERM_MONTHS)


class RepaymentSchema(dy.Schema):
    """``repayments``: the full instalment schedule of every loan and what was paid."""

    loan_id = dy.String(primary_key=True, min_length=1)
    installment = dy.Int32(primary_key=True, min=1)
    due_on = dy.Date()
    amount_due = dy.Float64(min_exclusive=0.0)
    paid_on = dy.Date(nullable=True)
    amount_paid = dy.Float64(min=0.0)

    @dy.rule()
    def paid_without_date(cls) -> pl.Expr:
        """Money paid must carry the date it was paid."""
        return ~((pl.col("amount_paid") > 0) & pl.col("paid_on").is_null())


class OutcomeSchema(dy.Schema):
    """``outcomes`` (optional): a known default flag per loan."""

    loan_id = dy.String(primary_key=True, min_length=1)
    defaulted = dy.Bool()


SCHEMAS: dict[str, type[dy.Schema]] = {
    "merchants": MerchantSchema,
    "consumers": ConsumerSchema,
    "merchant_transactions": MerchantTransactionSchema,
    "consumer_transactions": ConsumerTransactionSchema,
    "loans": LoanSchema,
    "repayments": RepaymentSchema,
    "outcomes": OutcomeSchema,
}


def rule_name(raw: str) -> str:
    """Translate a dataframely rule name into the plain name used in quarantine and summaries.

    ``primary_key`` becomes ``duplicate_id``; ``amount|min_exclusive`` becomes
    ``non_positive_amount``; ``kind|check__unknown_kind`` becomes ``unknown_kind``;
    ``ts|dtype`` (a value that could not be read as the column's type) becomes ``bad_value_ts``.
    """
    if raw == "primary_key":
        return "duplicate_id"
    if "|" not in raw:
        return raw
    column, check = raw.split("|", 1)
    if check.startswith("check__"):
        return check.removeprefix("check__")
    names = {
        "nullability": f"null_{column}",
        "min_exclusive": f"non_positive_{column}",
        "min": f"{column}_below_min",
        "max": f"{column}_above_max",
        "min_length": f"empty_{column}",
        "nan": f"nan_{column}",
        "inf": f"infinite_{column}",
        "dtype": f"bad_value_{column}",
    }
    return names.get(check, f"{column}_{check}")
