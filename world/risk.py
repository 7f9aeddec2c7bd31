"""Risk at a loan's issue, in log-odds: the constants that drive it and its parts.

Risk is not a sum of parts. Besides the additive trait index, each segment's risk at issue has
interactions that real lending shows and that leave traces in the log (see
:func:`merchant_risk_now` and :func:`consumer_risk_now`). A points-per-bin scorecard cannot add
these up; a tree model can find them. The parts are saved beside the true PD
(``truth/loans.parquet``, columns :data:`features.contract.truth.LOGIT_PARTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world.numeric import sigmoid
from world.population import Consumers, Merchants

# Risk at issue, in log-odds: the base rate, the weight of the additive trait index, of the hidden
# part no log shows, and the strength of each interaction. The log is meant to carry most of the
# risk (the premise of scoring on it), and the interactions are a large share of it (newness and
# smallness, a slump on loose habits, debt on irregular income), as in SME and thin-file lending;
# the hidden part keeps the true PD out of any model's reach. truth/loans.parquet saves each part,
# so the split is checkable.
MERCHANT_INTERCEPT = -5.6  # log-odds of default of an average loan, before the risk index
MERCHANT_TRAIT_WEIGHT = 0.8
MERCHANT_HIDDEN_WEIGHT = 0.25  # risk no log shows (owner's health, family debts): the noise floor
MERCHANT_SLUMP_LOOSE = 3.0
MERCHANT_YOUNG_SMALL = 4.0
MERCHANT_SMALL_SALES = 4.0  # guest sales a month under which a merchant counts as small
# Punctuality is mostly habit: lateness on instalments follows the risk index plus this much per
# SD of (lack of) discipline, so an earlier loan's repayment record reads discipline too.
LATE_HABIT = 0.6
CONSUMER_INTERCEPT = -6.5
CONSUMER_TRAIT_WEIGHT = 0.6
CONSUMER_HIDDEN_WEIGHT = 0.25
CONSUMER_DEBT_IRREGULAR = 5.0
CONSUMER_SPEND_KINK = 0.6
CONSUMER_OVERSPEND = 5.0
CONSUMER_THIN_FILE = 3.0


@dataclass(frozen=True)
class RiskParts:
    """An entity's risk index at a loan's issue, in log-odds, split by what could reveal it.

    ``traits`` is the additive trait index (what the whole log reveals in the long run),
    ``state`` the additive state at issue (last month's distress or job loss), ``interactions``
    the non-additive terms (each visible in the log, none a sum of parts), ``hidden`` the risk no
    log shows. The parts are saved beside the true PD (``truth/loans.parquet``) so a modeller
    can see how much of the risk the log could reveal at all.
    """

    traits: np.ndarray
    state: np.ndarray
    interactions: np.ndarray
    hidden: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """The risk index: the sum of the parts."""
        return self.traits + self.state + self.interactions + self.hidden

    def at(self, who: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of the entities ``who``, keyed ``logit_<part>``."""
        return {
            f"logit_{k}": np.asarray(v, dtype=np.float64)[who]
            for k, v in (
                ("traits", self.traits),
                ("state", self.state),
                ("interactions", self.interactions),
                ("hidden", self.hidden),
            )
        }


def merchant_risk_now(mer: Merchants, *, distress: np.ndarray, today: int) -> RiskParts:
    """A merchant's risk index at a loan's issue: traits, the state at issue, and interactions.

    The additive part is the trait index, unobserved noise and a distress episode last month.
    Two interactions, each visible in the sales log, make it more than a sum of parts:

    * a slump on loose discipline: a month of collapsing sales is far more dangerous for a
      merchant with many refunds and chargebacks than for a careful one;
    * young and small: a merchant onboarded within the last year with few sales is far riskier
      than either a young merchant with a real customer base or a small, established one (the
      liability of newness and smallness).
    """
    loose = sigmoid(-2.0 * mer.discipline)
    young = sigmoid((1.0 - (today - mer.onboarded) / 365.25) / 0.2)
    small = sigmoid((np.log(MERCHANT_SMALL_SALES) - np.log(mer.guest_rate)) / 0.4)
    return RiskParts(
        traits=MERCHANT_TRAIT_WEIGHT * mer.risk,
        state=0.4 * distress,
        interactions=MERCHANT_SLUMP_LOOSE * distress * loose + MERCHANT_YOUNG_SMALL * young * small,
        hidden=MERCHANT_HIDDEN_WEIGHT * mer.hidden,
    )


def consumer_risk_now(
    con: Consumers,
    *,
    level: np.ndarray,
    unemployed: np.ndarray,
    today: int,
) -> RiskParts:
    """A consumer's risk index at a loan's issue: traits, the state at issue, and interactions.

    The additive part is the trait index, unobserved noise and last month's job loss. On top of
    it come three interactions that real consumer credit shows and a points-per-bin scorecard
    cannot add up, each visible in the transaction log:

    * debt on irregular income: fixed monthly obligations (rent, other lenders' instalments,
      paid as bills) over income are dangerous mainly when income is irregular (gig income, or
      none last month); a salaried borrower carries the same burden easily;
    * over-spending: spending close to or above income hurts mostly when discipline is low
      (missed bills, late instalments); disciplined heavy spenders adjust;
    * thin file: young borrowers new to the platform default more; youth alone, or a short
      tenure at a later age, matters little.
    """
    dti = con.bills.sum(axis=1) / np.maximum(level, 1.0)
    debt = 1.0 - np.exp(-dti / 0.25)
    irregular = np.maximum(~con.regular, unemployed).astype(np.float64)
    over = np.clip(con.spend_share - CONSUMER_SPEND_KINK, 0.0, None)
    loose = sigmoid(-2.0 * con.discipline)
    age = (today - con.birth_day) / 365.25
    tenure = (today - con.registered) / 365.25
    thin_file = sigmoid((25.0 - age) / 1.5) * sigmoid((1.0 - tenure) / 0.2)
    return RiskParts(
        traits=CONSUMER_TRAIT_WEIGHT * con.risk,
        state=0.6 * unemployed,
        interactions=CONSUMER_DEBT_IRREGULAR * debt * irregular
        + CONSUMER_OVERSPEND * over * loose
        + CONSUMER_THIN_FILE * thin_file,
        hidden=CONSUMER_HIDDEN_WEIGHT * con.hidden,
    )
