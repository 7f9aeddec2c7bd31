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

from dataclasses import dataclass


@dataclass(frozen=True)
class RepaymentRules:
    """The repayment thresholds, from params.

    - ``default_dpd``: days past due that make a loan bad (params ``label.dpd_threshold``);
      the credit history counts earlier instalments that reached it.
    - ``delinquent_dpd``: days past due that make a borrower delinquent (params
      ``features.delinquent_dpd``): counterparties that reached it are risky, and the credit
      history counts earlier instalments that reached it.
    - ``tolerance``: yuan an instalment may be paid short of its amount due and still count as
      paid (params ``label.partial_payment_tolerance``).
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
