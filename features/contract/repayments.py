"""Repayment rules: when an instalment is paid, how late it is, when a borrower went bad.

One definition, used by the loan label (:mod:`models.labels`), the credit-history features and
the delinquency onset of counterparties. An instalment is *settled* when it was paid in full:
``amount_paid`` at least ``amount_due`` minus the tolerance; an instalment paid short is not
settled, so it stays past due. The thresholds come from params (:class:`RepaymentRules`),
never from literals in the code that reads them.

The expressions read the contract columns of the repayments table (``due_on``, ``paid_on``,
``amount_due``, ``amount_paid``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class RepaymentRules:
    """The repayment thresholds, from params.

    - ``default_dpd``: days past due that make a loan bad (params ``label.dpd_threshold``);
      the credit history counts earlier instalments that reached it.
    - ``delinquent_dpd``: days past due that make a borrower delinquent (params
      ``features.delinquent_dpd``): counterparties that reached it are risky, and the credit
      history counts earlier instalments that reached it.
    - ``tolerance``: money (the log's currency) an instalment may be paid short of its amount
      due and still count as paid (params ``label.partial_payment_tolerance``).
    """

    default_dpd: int
    delinquent_dpd: int
    tolerance: float

    def __post_init__(self) -> None:
        """Reject thresholds that mean nothing."""
        if self.default_dpd <= 0 or self.delinquent_dpd <= 0:
            raise ValueError(
                "expected positive days past due; got "
                f"default_dpd={self.default_dpd}, delinquent_dpd={self.delinquent_dpd}"
            )
        if self.tolerance < 0:
            raise ValueError(f"expected a non-negative tolerance; got {self.tolerance}")


def settled(tolerance: float) -> pl.Expr:
    """Whether an instalment was paid in full: a paid date and at least ``amount_due - tolerance``.

    An instalment paid short by more than the tolerance is not settled: it stays past due.
    """
    return pl.col("paid_on").is_not_null() & (
        pl.col("amount_paid") >= pl.col("amount_due") - tolerance
    )


def settled_on(tolerance: float) -> pl.Expr:
    """The day an instalment was settled; null if it never was (unpaid, or paid short)."""
    return pl.when(settled(tolerance)).then(pl.col("paid_on"))


def settled_before(as_of: pl.Expr, tolerance: float) -> pl.Expr:
    """Whether the instalment was settled strictly before ``as_of`` (known at as_of)."""
    return (settled_on(tolerance) < as_of).fill_null(False)


def days_past_due(as_of: pl.Expr, tolerance: float) -> pl.Expr:
    """Days past due as observed at ``as_of`` (never negative).

    Measured at the day the instalment was settled if that was before ``as_of``, else at
    ``as_of``: a payment on or after as_of is not yet known, and a short payment never settles.
    """
    observed_at = pl.when(settled_before(as_of, tolerance)).then(pl.col("paid_on")).otherwise(as_of)
    return (observed_at - pl.col("due_on")).dt.total_days().clip(lower_bound=0)


def reached_on(dpd: int) -> pl.Expr:
    """The day an instalment not settled by then reaches ``dpd`` days past due: ``due_on + dpd``."""
    return pl.col("due_on") + pl.duration(days=dpd)


def reached(dpd: int, tolerance: float) -> pl.Expr:
    """Whether the instalment reaches ``dpd`` days past due (on :func:`reached_on`).

    It does unless it was settled before that day: paid ``dpd - 1`` days late is not ``dpd``+
    days past due, paid ``dpd`` days late is. Whether the day was observed is the caller's
    question (the label asks it of the log's end, the features of each as_of).
    """
    return settled_on(tolerance).is_null() | (settled_on(tolerance) >= reached_on(dpd))


def reached_before(dpd: int, tolerance: float, day: pl.Expr | dt.date) -> pl.Expr:
    """Whether the instalment reached ``dpd`` days past due on a day strictly before ``day``.

    ``day`` is the first day not observed: a loan's label asks it of the log's end, a feature
    of its as_of, and a counterparty's onset is read the same way (``onset < as_of``), so all
    three agree on the day an instalment turns late or bad.
    """
    return reached(dpd, tolerance) & (reached_on(dpd) < day)


def onset_day(dpd: int, tolerance: float) -> pl.Expr:
    """Aggregation: the first day any of a borrower's instalments reached ``dpd`` days past due.

    Null for a borrower none of whose instalments reaches it. An instalment reaches ``dpd`` on
    ``due_on + dpd`` unless settled before, which is known by that day, so reading
    ``onset < as_of`` is point-in-time correct.
    """
    return reached_on(dpd).filter(reached(dpd, tolerance)).min()
