"""Loans: who applies, how much they borrow, the true default probability, and repayment.

Loans are issued from month :data:`FIRST_LOAN_MONTH` onwards (repeat loans included) with
instalment schedules. Each loan's true default probability is drawn from the borrower's risk at
issue (:mod:`world.risk`), the loan's own terms and the macro path over its window; the default
is a Bernoulli draw from it, and the repayments follow, so 90+ days-past-due defaults arise
naturally. Merchants borrow often (a credit line drawn every few months, top-ups while a loan is
open) and consumers less often, so an out-of-time month holds enough loans to measure
calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from features.contract.truth import LOGIT_PARTS
from world.numeric import sigmoid
from world.population import Consumers, Merchants
from world.risk import (
    CONSUMER_INTERCEPT,
    LATE_HABIT,
    MERCHANT_INTERCEPT,
    RiskParts,
    consumer_risk_now,
    merchant_risk_now,
)
from world.seasons import Calendar
from world.writer import sequential_ids

#: Loans are issued from this month index on (0-based), so entities have history first.
FIRST_LOAN_MONTH = 3
#: Months an entity must have been active before it can borrow.
MIN_HISTORY_MONTHS = 3
#: Defaults start at an instalment whose due date leaves 90 days inside the 12-month window.
MAX_ONSET_INSTALLMENT = 8


@dataclass(frozen=True)
class Product:
    """A segment's loan product: who applies how often, how much they get, on what terms."""

    segment: str
    intercept: float  # log-odds of default of an average loan, before the risk index
    apply_rate: float  # monthly chance of an application at a risk index of 0 ...
    apply_busy: float  # ... times this while an earlier loan still runs
    principal_factor: float  # principal as a multiple of recent monthly sales or income
    cap: float
    floor: float
    monthly_rate: float  # interest on the principal, per month
    terms: np.ndarray  # terms in months ...
    term_shares: np.ndarray  # ... and how often each is chosen


#: The merchants' credit line (capped at 5,000,000 yuan) and the consumers' loan (200,000 yuan,
#: the cap on internet consumer loans per borrower in China's 2020 rules).
PRODUCTS = {
    "merchant": Product(
        segment="merchant",
        intercept=MERCHANT_INTERCEPT,
        apply_rate=0.40,
        apply_busy=0.6,
        principal_factor=1.5,
        cap=5_000_000.0,
        floor=1_000.0,
        monthly_rate=0.015,
        terms=np.array([3, 6, 12]),
        term_shares=np.array([0.30, 0.45, 0.25]),
    ),
    "consumer": Product(
        segment="consumer",
        intercept=CONSUMER_INTERCEPT,
        apply_rate=0.18,
        apply_busy=0.5,
        principal_factor=1.2,
        cap=200_000.0,
        floor=500.0,
        monthly_rate=0.02,
        terms=np.array([3, 6, 12]),
        term_shares=np.array([0.25, 0.40, 0.35]),
    ),
}


@dataclass(frozen=True)
class Applications:
    """One segment's borrowing in one month: who may borrow, how likely, how much, at what risk."""

    product: Product
    owner: pl.Series  # entity ids, by entity index
    eligible: np.ndarray
    apply_p: np.ndarray
    capacity: np.ndarray  # recent monthly sales or income: what the principal scales with
    risk_now: RiskParts
    habit: np.ndarray  # (lack of) discipline, which makes instalments late


def _applications(
    product: Product,
    who: Merchants | Consumers,
    m: int,
    *,
    history: np.ndarray,
    busy: np.ndarray,
    risk_now: RiskParts,
) -> Applications:
    """Entities with ``MIN_HISTORY_MONTHS`` of activity and some recent flow may apply."""
    capacity = history[slice(max(0, m - 3), m)].mean(axis=0)  # the last three months
    return Applications(
        product=product,
        owner=who.ids,
        eligible=(who.first_month <= m - MIN_HISTORY_MONTHS) & (capacity > 0),
        apply_p=product.apply_rate
        * np.exp(0.25 * who.risk)
        * np.where(busy > m, product.apply_busy, 1.0),
        capacity=capacity,
        risk_now=risk_now,
        habit=-who.discipline,
    )


def merchant_applications(
    mer: Merchants,
    m: int,
    *,
    cal: Calendar,
    sales: np.ndarray,
    distress: np.ndarray,
    busy: np.ndarray,
) -> Applications:
    """Merchants' borrowing in month ``m`` from their sales and distress so far."""
    risk_now = merchant_risk_now(mer, distress=distress[m - 1], today=int(cal.month_start[m]))
    return _applications(PRODUCTS["merchant"], mer, m, history=sales, busy=busy, risk_now=risk_now)


def consumer_applications(
    con: Consumers,
    m: int,
    *,
    cal: Calendar,
    income: np.ndarray,
    level: np.ndarray,
    unemployed: np.ndarray,
    busy: np.ndarray,
) -> Applications:
    """Consumers' borrowing in month ``m`` from their income and employment so far."""
    risk_now = consumer_risk_now(
        con, level=level, unemployed=unemployed[m - 1], today=int(cal.month_start[m])
    )
    return _applications(PRODUCTS["consumer"], con, m, history=income, busy=busy, risk_now=risk_now)


def issue_loans(
    rng: np.random.Generator, cal: Calendar, m: int, apps: Applications, macro: np.ndarray
) -> dict[str, np.ndarray]:
    """Loans issued in month ``m``: who borrows, how much, and the true default probability."""
    who = np.flatnonzero(apps.eligible & (rng.random(len(apps.eligible)) < apps.apply_p))
    k = len(who)
    product = apps.product
    term = rng.choice(product.terms, k, p=product.term_shares).astype(np.int32)
    raw = apps.capacity[who] * product.principal_factor * np.exp(rng.normal(0.0, 0.35, k))
    principal = np.floor(np.clip(raw, product.floor, product.cap) / 100.0) * 100.0
    leverage = np.log(principal / np.maximum(apps.capacity[who], 1.0))
    window = macro[m : m + 12].mean()
    risk = apps.risk_now.total[who]
    # The loan's own terms (base rate, leverage) and the macro path over its window: known to
    # nobody at issue, it moves every loan of a month together.
    loan_part = product.intercept + 0.25 * leverage
    macro_part = np.full(k, 1.2 * window)
    return {
        "entity": who,
        "issued": cal.month_start[m] + rng.integers(0, cal.days_in(m), k),
        "principal": principal,
        "term": term,
        "true_pd": sigmoid(loan_part + risk + macro_part),
        "lateness": risk + LATE_HABIT * apps.habit[who],
        **apps.risk_now.at(who),
        "logit_loan": loan_part,
        "logit_macro": macro_part,
    }


def schedule(
    rng: np.random.Generator,
    loans: pl.DataFrame,
    *,
    macro: np.ndarray,
    cal: Calendar,
    end_day: int,
    monthly_rate: float,
) -> pl.DataFrame:
    """Instalment schedules and what was paid, for the loans of one segment.

    Defaulters stop paying at an onset instalment early enough that 90 days past due fall inside
    the 12-month window (sometimes with a partial payment first); everyone else pays, late more
    often the riskier they are and the worse the macro factor at the due date. Payments on or
    after the world's end are not observed.
    """
    n = loans.height
    term = loans["term"].to_numpy()
    reps = np.repeat(np.arange(n), term)
    inst = (np.arange(len(reps)) - np.repeat(np.cumsum(term) - term, term) + 1).astype(np.int32)
    issued = loans["issued"].to_numpy()[reps]
    issued_dates = issued.astype("datetime64[D]")
    issue_month = issued_dates.astype("datetime64[M]")
    due_month = issue_month + inst
    due_first = due_month.astype("datetime64[D]").astype(np.int64)
    next_first = (due_month + 1).astype("datetime64[D]").astype(np.int64)
    dom = (issued_dates - issue_month.astype("datetime64[D]")).astype(np.int64)
    due = np.minimum(due_first + dom, next_first - 1)
    principal = loans["principal"].to_numpy()[reps]
    t = term[reps]
    amount_due = np.round(principal / t + principal * monthly_rate, 2)

    defaulted = loans["defaulted"].to_numpy()
    onset_max = np.minimum(term, MAX_ONSET_INSTALLMENT)
    # Early instalments are the likeliest onset (first-payment defaults are common).
    u = rng.random(n)
    onset = 1 + np.floor(np.log1p(-u * (1 - 0.7**onset_max)) / np.log(0.7)).astype(np.int64)
    onset = np.minimum(onset, onset_max)
    onset_r = np.where(defaulted, onset, 10_000)[reps]
    partial = (rng.random(n) < 0.25)[reps]

    month_idx = np.clip(
        (due_month - np.datetime64(int(cal.month_start[0]), "D").astype("datetime64[M]")).astype(
            np.int64
        ),
        0,
        len(macro) - 1,
    )
    lateness = loans["lateness"].to_numpy()[reps]
    late_p = sigmoid(-1.2 + 0.9 * lateness + 1.0 * macro[month_idx] + 0.8 * defaulted[reps])
    is_late = rng.random(len(reps)) < late_p
    late_days = np.minimum(rng.geometric(1.0 / (4.0 + 6.0 * np.exp(0.5 * lateness)), len(reps)), 75)
    early = rng.integers(0, 6, len(reps))
    paid = np.where(is_late, due + late_days, due - early)
    paid = np.maximum(paid, issued + 1)
    amount_paid = amount_due.copy()
    before = inst < onset_r
    at = inst == onset_r
    part_share = np.round(amount_due * rng.uniform(0.1, 0.6, len(reps)), 2)
    paid = np.where(at & partial, due + rng.integers(0, 20, len(reps)), paid)
    amount_paid = np.where(at & partial, part_share, amount_paid)
    unpaid = ~before & ~(at & partial)
    observed = ~unpaid & (paid < end_day)
    return pl.DataFrame(
        {
            "loan_id": loans["loan_id"].gather(reps),
            "installment": inst,
            "due_on": due.astype("datetime64[D]"),
            "amount_due": amount_due,
            "paid_on": pl.Series(paid.astype("datetime64[D]")).scatter(
                np.flatnonzero(~observed), None
            ),
            "amount_paid": np.where(observed, amount_paid, 0.0),
        }
    )


@dataclass
class LoanBook:
    """Every loan issued so far with its schedule, and the month each borrower's last loan ends.

    ``loans`` and ``schedules`` hold one frame per segment and month, in the order issued;
    loan ids run on across them.
    """

    busy: dict[str, np.ndarray]  # per segment, by entity: month index the latest loan runs to
    loans: list[pl.DataFrame] = field(default_factory=list)
    schedules: list[pl.DataFrame] = field(default_factory=list)
    issued: int = 0

    @classmethod
    def empty(cls, merchants: int, consumers: int) -> LoanBook:
        """A book with no loans yet."""
        return cls(busy={"merchant": np.full(merchants, -1), "consumer": np.full(consumers, -1)})

    def issue(
        self,
        rng: np.random.Generator,
        m: int,
        apps: Applications,
        *,
        cal: Calendar,
        macro: np.ndarray,
        end_day: int,
    ) -> None:
        """Issue month ``m``'s loans of one segment, draw their defaults and schedules."""
        issued = issue_loans(rng, cal, m, apps, macro)
        k = len(issued["entity"])
        segment = apps.product.segment
        self.busy[segment][issued["entity"]] = m + issued["term"]
        frame = pl.DataFrame(
            {
                "loan_id": pl.select(sequential_ids("L", self.issued, k, 9)).to_series(),
                "segment": pl.repeat(segment, k, eager=True, dtype=pl.String),
                "entity": issued["entity"],
                "entity_id": apps.owner.gather(issued["entity"]),
                "issued": issued["issued"],
                "principal": issued["principal"],
                "term": issued["term"],
                "true_pd": issued["true_pd"],
                "defaulted": rng.random(k) < issued["true_pd"],
                "lateness": issued["lateness"],
                **{c: issued[c] for c in LOGIT_PARTS},
            }
        )
        self.issued += k
        self.loans.append(frame)
        self.schedules.append(
            schedule(
                rng,
                frame,
                macro=macro,
                cal=cal,
                end_day=end_day,
                monthly_rate=apps.product.monthly_rate,
            ).with_columns(
                pl.lit(segment).alias("segment"),
                pl.Series(np.repeat(issued["entity"], issued["term"])).alias("entity"),
            )
        )

    def paid_in(self, segment: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Payments of ``segment``'s loans on days ``lo`` to ``hi - 1``: entity, day, amount."""
        rep = (
            pl.concat(self.schedules).filter(
                (pl.col("segment") == segment)
                & (pl.col("amount_paid") > 0)
                & (pl.col("paid_on").cast(pl.Int64) >= lo)
                & (pl.col("paid_on").cast(pl.Int64) < hi)
            )
            if self.schedules
            else pl.DataFrame({"entity": [], "paid_on": [], "amount_paid": []})
        )
        return (
            rep["entity"].to_numpy().astype(np.int64),
            rep["paid_on"].cast(pl.Int64).to_numpy().astype(np.int64),
            rep["amount_paid"].to_numpy().astype(np.float64),
        )
