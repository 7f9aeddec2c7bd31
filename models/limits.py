"""The loan-limit engine: the least of four constraints, or zero on a knock-out.

1. band multiple x average monthly inflow (how much business the entity does);
2. repayment capacity: monthly free cash flow x target debt-service ratio x term;
3. expected-loss budget / (PD x LGD);
4. the product cap (5,000,000 yuan merchants; 200,000 consumers).
Zero below the approval cut-off or on a knock-out (no consent, currently delinquent). The
result is rounded down to a step and the binding constraint is recorded beside it.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CONSTRAINTS = ("band_multiple", "repayment_capacity", "expected_loss", "product_cap")


class LimitPolicy(BaseModel):
    """Every number of one segment's limit policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    product_cap: float = Field(gt=0)
    band_multiples: dict[str, float]
    debt_service_ratio: float = Field(0.3, gt=0, le=1)
    term_months: int = Field(12, gt=0)
    lgd: float = Field(0.6, gt=0, le=1)
    expected_loss_budget: float = Field(gt=0)
    approval_cutoff: int = 550
    knockout_dpd: int = Field(30, gt=0)
    rounding_step: float = Field(100.0, gt=0)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Limits (yuan, float) and the name of the binding constraint or knock-out per entity."""
    inflow = np.nan_to_num(np.maximum(np.asarray(monthly_inflow, dtype=float), 0.0))
    free = np.nan_to_num(np.maximum(np.asarray(monthly_free_cash_flow, dtype=float), 0.0))
    band = np.asarray(band)
    band_mult = np.select(
        [band == name for name in policy.band_multiples],
        list(policy.band_multiples.values()),
        default=0.0,
    )
    candidates = np.vstack(
        [
            band_mult * inflow,
            free * policy.debt_service_ratio * policy.term_months,
            policy.expected_loss_budget / (np.asarray(pd_, dtype=float) * policy.lgd),
            np.full(len(pd_), policy.product_cap),
        ]
    )
    which = np.argmin(candidates, axis=0)
    limit = np.floor(candidates.min(axis=0) / policy.rounding_step) * policy.rounding_step
    binding = np.array(CONSTRAINTS, dtype=object)[which]
    dpd = np.nan_to_num(np.asarray(current_dpd, dtype=float))
    knockouts = {  # in order of precedence
        "knockout_no_consent": ~np.asarray(consent, dtype=bool),
        "knockout_delinquent": dpd >= policy.knockout_dpd,
        "below_cutoff": np.asarray(score) < policy.approval_cutoff,
    }
    masks = list(knockouts.values())
    binding = np.select(masks, list(knockouts), default=binding)
    limit = np.where(np.logical_or.reduce(masks), 0.0, limit)
    return limit, binding.astype(str)
