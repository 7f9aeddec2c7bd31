"""The loan-limit engine: the least of four constraints, or zero on a knock-out.

1. ``band_multiple``: the band's multiple x average monthly net inflow (how much business the
   entity does);
2. ``repayment_capacity``: the principal that monthly instalments of
   ``debt_service_ratio`` x monthly free cash flow repay over ``term_months`` at
   ``annual_interest_rate`` (an annuity; with a zero rate, payment x term);
3. ``expected_loss``: the expected-loss budget / (PD x LGD), so PD x LGD x limit never exceeds
   the budget;
4. ``product_cap``: the demo's 5,000,000 for merchants; 200,000 for consumers (the per-borrower
   cap on internet consumer loans in China's 2020 rules). Every amount in the policy is in the
   log's currency: a lender sets its own in params.

Zero below the approval cut-off or on a knock-out (no consent, currently ``knockout_dpd``+ days
past due, or priced out: no rate under the legal ceiling covers the expected loss, see
:mod:`models.pricing`, whose policy is the ``pricing`` block of the same segment's policy, so one
product policy per segment holds LGD, term and price). The least constraint is rounded down to
``rounding_step`` and its name is recorded as the binding constraint (a knock-out's name when
one applies).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.application import instalment_rate
from models.pricing import PricingPolicy, risk_based_price

CONSTRAINTS = ("band_multiple", "repayment_capacity", "expected_loss", "product_cap")
KNOCKOUTS = ("knockout_no_consent", "knockout_delinquent", "below_cutoff", "priced_out")


class LimitPolicy(BaseModel):
    """Every number of one segment's product policy: the limit and (``pricing``) the price."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    product_cap: float = Field(gt=0)
    band_multiples: dict[str, float]
    debt_service_ratio: float = Field(0.3, gt=0, le=1)
    term_months: int = Field(12, gt=0)
    annual_interest_rate: float = Field(0.0, ge=0, lt=1)
    lgd: float = Field(0.6, gt=0, le=1)
    expected_loss_budget: float = Field(gt=0)
    approval_cutoff: int = 550
    knockout_dpd: int = Field(30, gt=0)
    rounding_step: float = Field(100.0, gt=0)
    pricing: PricingPolicy = PricingPolicy()

    @model_validator(mode="after")
    def _multiples_are_non_negative(self) -> LimitPolicy:
        negative = {k: v for k, v in self.band_multiples.items() if not v >= 0}
        if negative:
            raise ValueError(f"expected band multiples >= 0; got {negative}")
        return self

    @property
    def annuity_factor(self) -> float:
        """Principal repaid by an instalment of 1 a month over the term at the annual rate."""
        return 1 / instalment_rate(float(self.term_months), self.annual_interest_rate)

    def check_bands(self, band_order: Sequence[str], min_score: int, max_score: int) -> None:
        """Refuse a policy that disagrees with the band table.

        Every band needs a multiple and no other name may appear; multiples may not fall as the
        band rises (else a better score could get a smaller limit); the cut-off must sit inside
        the score range.
        """
        if set(self.band_multiples) != set(band_order):
            raise ValueError(
                f"expected band multiples for exactly the bands {list(band_order)}; "
                f"got {sorted(self.band_multiples)}"
            )
        multiples = [self.band_multiples[b] for b in band_order]
        if any(lo > hi for lo, hi in itertools.pairwise(multiples)):
            raise ValueError(
                f"expected band multiples non-decreasing from {band_order[0]} to "
                f"{band_order[-1]}; got {multiples}"
            )
        if not min_score <= self.approval_cutoff <= max_score + 1:
            raise ValueError(
                f"expected approval_cutoff in [{min_score}, {max_score + 1}]; "
                f"got {self.approval_cutoff}"
            )


def _vector(name: str, values: np.ndarray, n: int, dtype: type = float) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"expected {name} of shape ({n},); got {array.shape}")
    return array


def loan_limits(
    *,
    pd_: np.ndarray,
    score: np.ndarray,
    band: np.ndarray,
    monthly_inflow: np.ndarray,
    monthly_free_cash_flow: np.ndarray,
    current_dpd: np.ndarray,
    consent: np.ndarray,
    policy: LimitPolicy,
    apply_cutoff: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Limits (the log's currency, >= 0) and the binding constraint or knock-out of each entity.

    Missing or negative cash flow counts as zero (no evidence of capacity, no limit); a missing
    days-past-due counts as not delinquent (no loan, nothing overdue). ``apply_cutoff=False``
    leaves the approval cut-off out, giving the limit each entity would get if approved (what
    a cut-off strategy table needs); knock-outs (priced out included) always apply.
    """
    pd_ = np.asarray(pd_, dtype=float)
    n = pd_.shape[0] if pd_.ndim == 1 else -1
    if n < 0:
        raise ValueError(f"expected a 1-d array of PDs; got shape {pd_.shape}")
    if not ((pd_ > 0) & (pd_ <= 1)).all():
        raise ValueError(f"expected PDs in (0, 1]; got {pd_[~((pd_ > 0) & (pd_ <= 1))][:5]}")
    score = _vector("score", score, n)
    band = _vector("band", band, n, dtype=object)
    unknown = set(band.tolist()) - set(policy.band_multiples)
    if unknown:
        raise ValueError(
            f"expected bands among {sorted(policy.band_multiples)}; got {sorted(map(str, unknown))}"
        )
    inflow = np.nan_to_num(np.maximum(_vector("monthly_inflow", monthly_inflow, n), 0.0))
    free = np.nan_to_num(
        np.maximum(_vector("monthly_free_cash_flow", monthly_free_cash_flow, n), 0.0)
    )
    band_mult = np.select(
        [band == name for name in policy.band_multiples],
        list(policy.band_multiples.values()),
        default=0.0,
    )
    candidates = np.vstack(
        [
            band_mult * inflow,
            free * policy.debt_service_ratio * policy.annuity_factor,
            policy.expected_loss_budget / (pd_ * policy.lgd),
            np.full(n, policy.product_cap),
        ]
    )
    which = np.argmin(candidates, axis=0)
    limit = np.floor(candidates.min(axis=0) / policy.rounding_step) * policy.rounding_step
    binding = np.array(CONSTRAINTS, dtype=object)[which]
    dpd = np.nan_to_num(_vector("current_dpd", current_dpd, n))
    consent = _vector("consent", consent, n, dtype=bool)
    masks = [  # in order of precedence, named as KNOCKOUTS
        ~consent,
        dpd >= policy.knockout_dpd,
        (score < policy.approval_cutoff) if apply_cutoff else np.zeros(n, dtype=bool),
        risk_based_price(
            pd_, lgd=policy.lgd, term_months=policy.term_months, policy=policy.pricing
        )[1],
    ]
    binding = np.select(masks, list(KNOCKOUTS), default=binding)
    limit = np.where(np.logical_or.reduce(masks), 0.0, np.maximum(limit, 0.0))
    return limit, binding.astype(str)
