"""Risk-based price: the annual rate that covers the expected loss, capped at the legal ceiling.

Conventions (one loan of principal 1, simple annual rates, no compounding):

- ``pd_`` is the model's PD over the label's performance window, **12 months**; over a term of
  ``τ = term_months / 12`` years it becomes ``pd_term = 1 - (1 - pd_) ** τ`` (a constant hazard;
  for the demo's 12-month products ``pd_term = pd_``).
- A borrower who repays pays the principal and interest ``r · τ``; a borrower who defaults pays
  no interest and the lender loses ``LGD`` of the principal.
- The lender needs ``c = cost_of_funds + operating_cost + target_margin`` a year on the principal.

The break-even rate ``r*`` is the one whose expected return covers ``c`` over the term::

    (1 - pd_term) · r* · τ  -  pd_term · LGD  =  c · τ
    r* = (c · τ + pd_term · LGD) / ((1 - pd_term) · τ)

(for a one-year term: ``r* = (c + PD · LGD) / (1 - PD)``). ``r*`` rises strictly with the PD.
The quoted ``apr`` is ``r*`` rounded **up** to a whole basis point (so it always covers) and
never above ``max_apr``, the legal ceiling (24% a year in the demo); when ``r* > max_apr`` no
price under the cap covers the expected loss and the applicant is **priced out** (``apr`` is
NaN, and the limit engine knocks the entity out as ``priced_out``).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

BASIS_POINT = 1e-4
PD_HORIZON_MONTHS = 12  # the label's performance window: the PD is a 12-month PD


class PricingPolicy(BaseModel):
    """The annual rates one segment's price is built from, and the legal ceiling."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cost_of_funds: float = Field(0.03, ge=0, lt=1)
    operating_cost: float = Field(0.02, ge=0, lt=1)
    target_margin: float = Field(0.02, ge=0, lt=1)
    max_apr: float = Field(0.24, gt=0, le=1)

    @model_validator(mode="after")
    def _ceiling_above_costs(self) -> PricingPolicy:
        if self.required_return >= self.max_apr:
            raise ValueError(
                "expected max_apr above cost_of_funds + operating_cost + target_margin "
                f"(else nobody can be priced); got {self.max_apr} <= {self.required_return}"
            )
        return self

    @property
    def required_return(self) -> float:
        """``c``: what the lender needs a year on the principal before any loss."""
        return self.cost_of_funds + self.operating_cost + self.target_margin


def term_pd(pd_: np.ndarray, term_months: int) -> np.ndarray:
    """The 12-month PD carried over the loan's term at a constant hazard."""
    return 1.0 - (1.0 - pd_) ** (term_months / PD_HORIZON_MONTHS)


def break_even_apr(
    pd_: np.ndarray, *, lgd: float, term_months: int, policy: PricingPolicy
) -> np.ndarray:
    """``r*`` of each PD (see the module docstring); ``inf`` for a PD of 1."""
    pd_ = np.asarray(pd_, dtype=float)
    if pd_.ndim != 1 or not ((pd_ >= 0) & (pd_ <= 1)).all():
        raise ValueError(f"expected a 1-d array of PDs in [0, 1]; got shape {pd_.shape}")
    if not 0 < lgd <= 1 or term_months <= 0:
        raise ValueError(f"expected 0 < lgd <= 1 and term_months > 0; got {lgd}, {term_months}")
    years = term_months / 12
    p = term_pd(pd_, term_months)
    with np.errstate(divide="ignore"):
        return (policy.required_return * years + p * lgd) / ((1.0 - p) * years)


def risk_based_price(
    pd_: np.ndarray, *, lgd: float, term_months: int, policy: PricingPolicy
) -> tuple[np.ndarray, np.ndarray]:
    """``(apr, priced_out)`` of each PD: the quoted annual rate (NaN when priced out) and flag.

    ``priced_out`` is exactly ``r* > max_apr``; otherwise ``apr`` is ``r*`` rounded up to a
    basis point and capped at ``max_apr``, so ``r* <= apr <= max_apr``.
    """
    floor = break_even_apr(pd_, lgd=lgd, term_months=term_months, policy=policy)
    priced_out = floor > policy.max_apr
    # r* is a float: strip representation noise before rounding up (1200.0000000001 bp is 1200)
    quoted = np.ceil(np.round(floor / BASIS_POINT, 6)) * BASIS_POINT
    apr = np.where(priced_out, np.nan, np.minimum(quoted, policy.max_apr))
    return apr, priced_out
