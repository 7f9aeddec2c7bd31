"""The application family: the loan asked for, and what it costs against the entity's own flows.

A feature snapshot is made for a loan: the training spine's loan (the loan issued is the loan
asked for), the applicant's request in the online decision, or the segment's reference loan
when a whole book is scored. The loan reaches the feature job in two spine columns,
:data:`PRINCIPAL` (in the log's currency, after the source mapping's ``currency.scale``) and
:data:`TERM_MONTHS`; the product's annual rate comes from params (``limits.<segment>.
annual_interest_rate``, the one definition of the rate) through
:class:`~features.build.DefinitionParams`.

Features (every segment): the principal, the term and the monthly instalment (an annuity at the
product's rate), then affordability ratios against the entity's flows before as_of:

- ``instalment_to_monthly_inflow``: the instalment over the typical monthly inflow (the
  segment's ``monthly_inflow`` policy input: a consumer's income over 90 days / 3, a merchant's
  net sales over 90 days / 3), the debt-service ratio a credit officer reads first;
- ``principal_to_monthly_inflow``: the principal in months of inflow (leverage);
- consumers: ``balance_floor_in_instalments_90d`` (the lowest daily closing balance over 90
  days, in instalments) and ``months_of_cover_90d`` (the median daily closing balance over 90
  days, in instalments);
- merchants: ``worst_month_in_instalments_90d`` (the leanest of the last three 30-day blocks'
  net sales, in instalments), the analogue of a balance floor for a log without balances.
  A merchant's months of cover is left out: the log holds no balance, and free cash flow over
  the instalment is the debt-service ratio again (net margin is a constant).

Direction of the floors: ``floor / instalment``, not ``instalment / floor``. A floor can be
zero or negative (an overdrawn account); ``instalment / floor`` jumps from +inf to -inf at zero
and has no monotone direction, while ``floor / instalment`` is continuous, signed and never
divides by zero (the instalment of a valid loan is positive): a higher value never lowers the
score. It is null when no balance was known in the window, like the balance features.

No inflow: the inflow ratios are capped at :data:`RATIO_CAP` (an instalment or principal that
many times the monthly inflow, or no inflow at all, is as unaffordable as it gets), not null.
With a monotone constraint a null would be routed by LightGBM to whichever side of a split fits
best and could land beside well-off applicants; at the cap it sits at the worst end, where the
constraint keeps it. Unknown stays null: without a log for the segment
(:data:`features.build.WITHOUT_LOG`) the ratios are null and only the principal, term and
instalment, which need no log, are kept.

Currency: the ratios are free of the currency; the principal and instalment are in the log's
currency, as is every money feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import polars as pl

from features.catalog import Catalog, CatalogBuilder, Feature
from features.contract.schemas import MAX_TERM_MONTHS
from features.contract.segments import CONSUMER, MERCHANT

PRINCIPAL = "principal"
TERM_MONTHS = "term_months"
#: The spine columns the application family reads: the loan asked for.
SPINE_COLUMNS: tuple[str, ...] = (PRINCIPAL, TERM_MONTHS)
#: Inflow ratios at or above this (and every ratio with no inflow) are this.
RATIO_CAP = 1000.0
FAMILY = "application"
Term = TypeVar("Term", float, pl.Expr)  # a number or a polars expression of months
ATP = "ability_to_pay"


def annuity(principal: pl.Expr, term_months: pl.Expr, annual_rate: float) -> pl.Expr:
    """The monthly instalment repaying ``principal`` over ``term_months`` at ``annual_rate``.

    ``P r / (1 - (1 + r)^-n)`` with ``r`` the monthly rate (annual / 12); ``P / n`` at a zero
    rate.
    """
    if not 0 <= annual_rate < 1:
        raise ValueError(f"expected an annual interest rate in [0, 1); got {annual_rate}")
    return principal * instalment_rate(term_months.cast(pl.Float64), annual_rate)


def instalment_rate(term_months: Term, annual_rate: float) -> Term:
    """The monthly instalment per unit of principal: the one annuity formula of the project.

    Works on a number (the limit policy's repayment capacity, :mod:`models.limits`) and on a
    polars expression (the application features), so both read the same instalment.
    """
    if annual_rate == 0:
        return 1 / term_months
    r = annual_rate / 12
    return r / (1 - (1 + r) ** (-term_months))


def capped_ratio(numerator: pl.Expr, inflow: pl.Expr) -> pl.Expr:
    """``numerator / inflow`` clipped at :data:`RATIO_CAP`; the cap where inflow is <= 0.

    Null where either side is null (unknown), never where the inflow is merely zero.
    """
    ratio = pl.when(inflow > 0).then(numerator / inflow).otherwise(RATIO_CAP)
    return pl.when(numerator.is_not_null() & inflow.is_not_null()).then(
        ratio.clip(upper_bound=RATIO_CAP)
    )


def _loan() -> tuple[pl.Expr, pl.Expr]:
    return pl.col(PRINCIPAL).cast(pl.Float64), pl.col(TERM_MONTHS).cast(pl.Int64)


def _merchant_floor() -> pl.Expr:
    """The leanest of the last three 30-day blocks' net sales (sales - refunds - chargebacks)."""
    return pl.min_horizontal(
        pl.col(f"sale_amt_b{k}") - pl.col(f"refund_amt_b{k}") - pl.col(f"chargeback_amt_b{k}")
        for k in range(3)
    )


def features(segment: str, annual_rate: float, monthly_inflow: pl.Expr) -> list[Feature]:
    """The application family of ``segment`` at the product's ``annual_rate``.

    ``monthly_inflow`` is the segment's typical monthly inflow (its ``monthly_inflow`` policy
    input, so the ratios and the limit read the same inflow).
    """
    if segment not in (MERCHANT.name, CONSUMER.name):
        raise ValueError(f"expected segment merchant or consumer; got {segment!r}")
    principal, term = _loan()
    instalment = annuity(principal, term, annual_rate)
    # Every feature here is actionable: the applicant chooses the amount and the term.
    b = CatalogBuilder(segment)
    # 0: the amount asked for scales with the entity's business or income and the currency;
    # alone it says nothing about risk in either direction (its ratios below do).
    b.declare(
        "loan_principal", principal, dimension=ATP, monotone=0, family=FAMILY, actionable=True,
        description="Principal of the loan asked for, in the log's currency (the loan issued "
        "in training; the segment's reference loan in batch scoring).",
        reason="size of the loan asked for",
    )  # fmt: skip
    # 0: a longer term lowers the instalment but lengthens the exposure; left free.
    b.declare(
        "loan_term_months", term, dimension=ATP, monotone=0, family=FAMILY, actionable=True,
        description="Term of the loan asked for, in months.",
        reason="term of the loan asked for",
    )  # fmt: skip
    # 0: an amount in the log's currency; what it weighs is read by the ratios below.
    b.declare(
        "loan_instalment", instalment, dimension=ATP, monotone=0, family=FAMILY, actionable=True,
        description=f"Monthly instalment of the loan asked for: an annuity at the product's "
        f"annual rate ({annual_rate:g}, params limits.{segment}.annual_interest_rate).",
        reason="size of the monthly instalment",
    )  # fmt: skip
    inflow_kind = "income" if segment == CONSUMER.name else "net sales (sales - refunds)"
    inflow_word = "income" if segment == CONSUMER.name else "sales"
    # -1: a larger share of the month's inflow owed to the loan leaves less for everything else.
    b.declare(
        "instalment_to_monthly_inflow", capped_ratio(instalment, monthly_inflow),
        dimension=ATP, monotone=-1, family=FAMILY, actionable=True, window_days=90,
        description=f"Monthly instalment over the average monthly {inflow_kind} of the 90 "
        f"days before as_of; {RATIO_CAP:g} (the cap) when there was none.",
        reason=f"the instalment is large against monthly {inflow_word}",
    )  # fmt: skip
    # -1: more months of inflow borrowed is more leverage.
    b.declare(
        "principal_to_monthly_inflow", capped_ratio(principal, monthly_inflow),
        dimension=ATP, monotone=-1, family=FAMILY, actionable=True, window_days=90,
        description=f"Principal over the average monthly {inflow_kind} of the 90 days before "
        f"as_of (months of inflow borrowed); {RATIO_CAP:g} (the cap) when there was none.",
        reason=f"the loan is large against monthly {inflow_word}",
    )  # fmt: skip
    if segment == CONSUMER.name:
        # +1: the worst day's balance measured in instalments: the buffer left to meet one.
        b.declare(
            "balance_floor_in_instalments_90d", pl.col("bal_min_90d") / instalment,
            dimension=ATP, monotone=1, family=FAMILY, actionable=True, window_days=90,
            description="Lowest daily closing balance in the 90 days before as_of over the "
            "monthly instalment (negative when the account was overdrawn); null when no "
            "balance was known in the window.",
            reason="the lowest balance would not cover an instalment",
        )  # fmt: skip
        # +1: months of instalments the ordinary day's balance would pay.
        b.declare(
            "months_of_cover_90d", pl.col("bal_p50_90d") / instalment,
            dimension=ATP, monotone=1, family=FAMILY, actionable=True, window_days=90,
            description="Median daily closing balance in the 90 days before as_of (each "
            "balance weighted by the days it was in force) over the monthly instalment; null "
            "when no balance was known in the window.",
            reason="the usual balance covers few instalments",
        )  # fmt: skip
    else:
        # +1: the leanest recent month's net sales in instalments: the floor of what comes in.
        b.declare(
            "worst_month_in_instalments_90d", _merchant_floor() / instalment,
            dimension=ATP, monotone=1, family=FAMILY, actionable=True, window_days=90,
            description="Lowest net sales (sales - refunds - chargebacks) of the three 30-day "
            "blocks before as_of over the monthly instalment: a balance floor's analogue for a "
            "log without balances.",
            reason="a lean month's sales would not cover the instalment",
        )  # fmt: skip
    return b.features


def with_application(catalog: Catalog, annual_rate: float, monthly_inflow: pl.Expr) -> Catalog:
    """``catalog`` with the application family appended; the rate joins its hash basis."""
    added = features(catalog.segment, annual_rate, monthly_inflow)
    return Catalog(
        catalog.segment,
        (*catalog.features, *added),
        (*catalog.basis, ("annual_interest_rate", annual_rate)),
    )


def check_spine(spine: pl.DataFrame) -> None:
    """Refuse a spine without a valid loan asked for: a clear one-line error, never a traceback.

    Both :data:`SPINE_COLUMNS` must be there and numeric; every principal positive and finite,
    every term a whole number of months in 1..MAX_TERM_MONTHS.
    """
    missing = [c for c in SPINE_COLUMNS if c not in spine.columns]
    if missing:
        raise ValueError(
            f"expected spine columns {list(SPINE_COLUMNS)} (the loan asked for, which the "
            f"application features read); missing {missing}"
        )
    for column in SPINE_COLUMNS:
        if not spine.schema[column].is_numeric():
            raise ValueError(
                f"expected a numeric spine column {column!r}; got {spine.schema[column]}"
            )
    principal, term = spine[PRINCIPAL].cast(pl.Float64), spine[TERM_MONTHS].cast(pl.Float64)
    valid_term = (term.round(0) == term) & (term >= 1) & (term <= MAX_TERM_MONTHS)
    bad = _bad_rows(
        {  # a null is broken too: the loan asked for is never unknown
            "principal > 0 and finite": (~(principal.is_finite() & (principal > 0))).fill_null(
                True
            ),
            f"term_months a whole number in 1..{MAX_TERM_MONTHS}": (~valid_term).fill_null(True),
        },
        spine,
    )
    if bad:
        raise ValueError(bad)


def _bad_rows(rules: Mapping[str, pl.Series], spine: pl.DataFrame) -> str:
    """The first broken rule's message (rows and the first entity), or ''."""
    for rule, broken in rules.items():
        n = int(broken.sum())
        if n:
            first = spine.filter(broken).row(0, named=True)
            return (
                f"expected {rule} for every spine row; got {n} row(s) that are not, the first "
                f"for entity {first.get('entity_id')!r}: principal={first[PRINCIPAL]!r}, "
                f"term_months={first[TERM_MONTHS]!r}"
            )
    return ""
