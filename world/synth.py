"""A synthetic lending world with known risk, written in the input contract.

No lender hands out its logs, so the demo, the tests and the benchmarks run on this world. It is
built so that the figures measured on it mean something:

* every merchant and consumer has latent traits (business health or income stability,
  discipline, volatility, growth) that drive its *behaviour* (sales level, trend and volatility,
  refunds, chargebacks, income regularity, spending ratio, bill payments, balances, lateness on
  earlier loans) and, through the same traits, its default risk;
* merchants and consumers are linked: a consumer's purchase from a platform merchant is also that
  merchant's sale (``buyer_id``), and risky consumers tend to buy from riskier merchants;
* the calendar is real: weekly and monthly cycles, the 6-18 and 11-11 shopping festivals, the
  Spring Festival dip; a macro factor by month moves sales, job losses, distress and defaults;
* loans are issued from month 4 onwards (repeat loans included) with instalment schedules;
  each loan's true default probability is drawn from the traits, the state at issue, the macro
  path over its window and unobserved noise, the default is a Bernoulli draw from it, and the
  repayments follow, so 90+ days-past-due defaults arise naturally. The true PD is saved beside
  the data (``truth/loans.parquet``), never as a feature;
* risk is not a sum of parts. Besides the additive trait index, each segment's risk at issue has
  interactions that real lending shows and that leave traces in the log (see
  :func:`_merchant_risk_now` and :func:`_consumer_risk_now`): fixed obligations (rent, other
  lenders' instalments, paid as bills) weigh on irregular earners far more than on salaried
  ones; over-spending hurts the undisciplined most; young borrowers new to the platform are
  riskier than youth or a short tenure alone suggest; a sales slump is worse for a merchant
  with many refunds and chargebacks; a young merchant with few sales is riskier than a young
  or a small one. A points-per-bin scorecard cannot add these up; a tree model can find them;
* merchants borrow often (a credit line drawn every few months, top-ups while a loan is open)
  and consumers less often, so an out-of-time month holds enough loans to measure calibration.

Everything is vectorised over entities and events (numpy/polars); the only Python loop is over
months, which also bounds memory: each month's transactions are written as one Parquet row group.
The same seed gives byte-identical tables.
"""

from __future__ import annotations

import calendar
import datetime
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import tables as contract
from features.contract.truth import KNOWABLE_PARTS, LOGIT_PARTS

__all__ = ["KNOWABLE_PARTS", "LOGIT_PARTS", "WorldSpec", "generate", "world_end"]

DAY_US = 86_400_000_000
#: Loans are issued from this month index on (0-based), so entities have history first.
FIRST_LOAN_MONTH = 3
#: Months an entity must have been active before it can borrow.
MIN_HISTORY_MONTHS = 3
#: Defaults start at an instalment whose due date leaves 90 days inside the 12-month window.
MAX_ONSET_INSTALLMENT = 8
# Risk at issue (see _merchant_risk_now and _consumer_risk_now), in log-odds: the base rate, the
# weight of the additive trait index, of the hidden part no log shows, and the strength of each
# interaction. The log is meant to carry most of the risk (the premise of scoring on it), and the
# interactions are a large share of it (newness and smallness, a slump on loose habits, debt on
# irregular income), as in SME and thin-file lending; the hidden part keeps the true PD out of
# any model's reach. truth/loans.parquet saves each part, so the split is checkable.
MERCHANT_INTERCEPT = -5.6  # log-odds of default of an average loan, before the risk index
MERCHANT_TRAIT_WEIGHT = 0.8
MERCHANT_HIDDEN_WEIGHT = 0.25  # risk no log shows (owner's health, family debts): the noise floor
MERCHANT_SLUMP_LOOSE = 3.0
MERCHANT_YOUNG_SMALL = 4.0
MERCHANT_SMALL_SALES = 4.0  # guest sales a month under which a merchant counts as small
MERCHANT_SLUMP_DEPTH = 2.0  # a distress episode cuts sales by this much, in log
MERCHANT_REFUND_RATE = 0.06  # the refund rate of a merchant of average discipline and health
# Loose merchants fulfil badly: each SD less discipline multiplies refunds by e^0.8 and
# chargebacks by e (a SD less health, both by e^0.3), so the refund history is the log's clearest
# read of discipline, the trait the slump interaction turns on.
MERCHANT_REFUND_DISCIPLINE = 0.8
MERCHANT_CHARGEBACK_DISCIPLINE = 1.0
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
PARQUET_COMPRESSION = "zstd"

# Spring Festival (Chinese New Year's Day); the dip and the run-up follow it.
SPRING_FESTIVAL: dict[int, datetime.date] = {
    y: datetime.date.fromisoformat(d)
    for y, d in {
        2015: "2015-02-19",
        2016: "2016-02-08",
        2017: "2017-01-28",
        2018: "2018-02-16",
        2019: "2019-02-05",
        2020: "2020-01-25",
        2021: "2021-02-12",
        2022: "2022-02-01",
        2023: "2023-01-22",
        2024: "2024-02-10",
        2025: "2025-01-29",
        2026: "2026-02-17",
        2027: "2027-02-06",
        2028: "2028-01-26",
        2029: "2029-02-13",
        2030: "2030-02-03",
        2031: "2031-01-23",
        2032: "2032-02-11",
        2033: "2033-01-31",
        2034: "2034-02-19",
        2035: "2035-02-08",
    }.items()
}

# Relative activity by weekday (Mon..Sun) and by hour of day (local time, stored as UTC).
WEEKDAY_FACTOR = np.array([0.93, 0.92, 0.95, 0.98, 1.07, 1.13, 1.04])
HOUR_WEIGHT = np.array(
    [
        *(0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 1.8, 2.0, 2.2),
        *(2.4, 2.1, 1.9, 1.9, 2.0, 2.1, 2.3, 2.6, 2.8, 2.7, 2.0, 1.0),
    ]
)

# How entities spread over industries and regions, and the industries' risk offsets.
INDUSTRY_SHARE = np.array([0.18, 0.10, 0.10, 0.22, 0.10, 0.08, 0.12, 0.10])
INDUSTRY_RISK = np.array([0.10, 0.05, -0.05, 0.20, -0.10, 0.25, -0.05, 0.0])
REGION_SHARE = np.array([0.16, 0.13, 0.11, 0.09, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.05, 0.09])


@dataclass(frozen=True)
class WorldSpec:
    """The size, span and seed of a synthetic world.

    ``start`` must be the first day of a month; the world covers ``months`` whole calendar
    months from it, and :func:`world_end` is the first day after them.
    """

    merchants: int
    consumers: int
    months: int
    seed: int
    start: datetime.date = datetime.date(2023, 1, 1)

    def __post_init__(self) -> None:
        if self.merchants < 1 or self.consumers < 1:
            raise ValueError(
                "expected at least one merchant and one consumer; "
                f"got merchants={self.merchants}, consumers={self.consumers}"
            )
        if self.months < 1:
            raise ValueError(f"expected months >= 1; got {self.months}")
        if self.seed < 0:
            raise ValueError(f"expected a non-negative seed; got {self.seed}")
        if not isinstance(self.start, datetime.date) or self.start.day != 1:
            raise ValueError(f"expected start on the first day of a month; got {self.start!r}")


def world_end(spec: WorldSpec) -> datetime.date:
    """The first day after the observed period (nothing on or after it is observed)."""
    return _add_months(spec.start, spec.months)


def _add_months(day: datetime.date, months: int) -> datetime.date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return datetime.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _rank01(x: np.ndarray) -> np.ndarray:
    """Ranks scaled into (0, 1), ties broken by position (stable)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = (np.arange(len(x)) + 0.5) / len(x)
    return ranks


# ----------------------------------------------------------------------------------------------
# Calendar
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    """Day grid of the world (plus a year after it for loan schedules) and its activity weights."""

    month_start: np.ndarray  # int64 day numbers (days since 1970-01-01), length months + 13
    day_weight: np.ndarray  # float64 activity weight of every day from the first month start
    season: np.ndarray  # expected events in a month relative to an average month

    def days_in(self, m: int) -> int:
        return int(self.month_start[m + 1] - self.month_start[m])

    def sample_days(self, rng: np.random.Generator, m: int, n: int) -> np.ndarray:
        """Day numbers of ``n`` events in month ``m``, drawn by the calendar weights."""
        lo = int(self.month_start[m] - self.month_start[0])
        w = self.day_weight[lo : lo + self.days_in(m)]
        cw = np.cumsum(w)
        pick = np.searchsorted(cw, rng.random(n) * cw[-1], side="right")
        return self.month_start[m] + np.minimum(pick, len(w) - 1)


def _calendar(start: datetime.date, months: int) -> _Calendar:
    base = np.datetime64(start, "M")
    month_start = (base + np.arange(months + 14)).astype("datetime64[D]").astype(np.int64)
    days = np.arange(month_start[0], month_start[-1])
    dates = days.astype("datetime64[D]")
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    month_of = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    w = WEEKDAY_FACTOR[weekday].copy()
    w *= 1.0 + 0.10 * np.exp(-(((dom - 12) / 4.0) ** 2))  # spending after mid-month paydays
    # Shopping festivals: 6-18 and 11-11 with their run-ups, and 12-12.
    w *= np.where((month_of == 6) & (dom < 18), 1.2, 1.0)
    w *= np.where((month_of == 6) & (dom == 18), 2.4, 1.0)
    w *= np.where((month_of == 11) & (dom < 11), 1.3, 1.0)
    w *= np.where((month_of == 11) & (dom == 11), 3.5, 1.0)
    w *= np.where((month_of == 11) & (dom > 11) & (dom <= 13), 1.3, 1.0)
    w *= np.where((month_of == 12) & (dom == 12), 1.6, 1.0)
    # Spring Festival: busy run-up, deep dip around the holiday week.
    years = np.unique(dates.astype("datetime64[Y]").astype(np.int64) + 1970)
    for year in years:  # a handful of years, not rows
        sf = SPRING_FESTIVAL.get(int(year), datetime.date(int(year), 2, 1))
        d0 = np.datetime64(sf, "D").astype(np.int64)
        rel = days - d0
        w *= np.where((rel >= -21) & (rel < -7), 1.15, 1.0)
        w *= np.where((rel >= -7) & (rel < -2), 0.7, 1.0)
        w *= np.where((rel >= -2) & (rel <= 4), 0.35, 1.0)
        w *= np.where((rel > 4) & (rel <= 10), 0.7, 1.0)
    w /= w.mean()
    per_month = np.add.reduceat(w, month_start[:-1] - month_start[0])
    return _Calendar(month_start=month_start, day_weight=w, season=per_month / per_month.mean())


def _timestamps(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """Microsecond timestamps on the given day numbers, at realistic hours."""
    cw = np.cumsum(HOUR_WEIGHT) / HOUR_WEIGHT.sum()
    hour = np.minimum(np.searchsorted(cw, rng.random(len(days)), side="right"), 23)
    second = hour * 3600 + rng.integers(0, 3600, len(days))
    return (
        days.astype(np.int64) * DAY_US + second * 1_000_000 + rng.integers(0, 1_000_000, len(days))
    )


# ----------------------------------------------------------------------------------------------
# Entities and their latent traits
# ----------------------------------------------------------------------------------------------


@dataclass
class _Merchants:
    ids: pl.Series
    first_month: np.ndarray  # first month index with activity (negative: before the world)
    onboarded: np.ndarray  # day numbers
    industry: np.ndarray
    region: np.ndarray
    consent: np.ndarray
    health: np.ndarray
    discipline: np.ndarray
    volatility: np.ndarray
    growth: np.ndarray
    hidden: np.ndarray
    risk: np.ndarray  # behaviour-linked risk index (higher is riskier)
    guest_rate: np.ndarray  # guest sales per month
    ticket: np.ndarray  # mean guest ticket (yuan)
    refund_p: np.ndarray
    chargeback_p: np.ndarray
    mult: np.ndarray  # (months, merchants) activity multiplier by month


@dataclass
class _Consumers:
    ids: pl.Series
    first_month: np.ndarray
    registered: np.ndarray
    region: np.ndarray
    birth_year: np.ndarray
    birth_day: np.ndarray  # day number of birth (the world writes only the year)
    consent: np.ndarray
    stability: np.ndarray
    discipline: np.ndarray
    volatility: np.ndarray
    growth: np.ndarray
    hidden: np.ndarray
    risk: np.ndarray
    risk_q: np.ndarray  # risk rank in (0, 1), for assortative merchant choice
    income: np.ndarray  # monthly income level (yuan)
    regular: np.ndarray  # paid a salary on a fixed day (else gig income)
    payday: np.ndarray
    purchase_rate: np.ndarray
    spend_share: np.ndarray
    bills: np.ndarray  # (consumers, 3) monthly bill amounts, 0 when the bill does not exist
    bill_day: np.ndarray  # (consumers, 3)
    bill_miss_p: np.ndarray
    transfer_rate: np.ndarray
    reports_balance: np.ndarray
    balance0: np.ndarray


def _onboarding(
    rng: np.random.Generator, n: int, cal: _Calendar, months: int, joined_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Onboarding day and first active month: some before the world, some during its first 2/3."""
    during = rng.random(n) < joined_share
    join_month = rng.integers(0, max(1, (2 * months) // 3), n)
    start = cal.month_start[0]
    day_during = cal.month_start[join_month] + rng.integers(0, 28, n)
    day_before = start - rng.integers(1, 4 * 365, n)
    onboarded = np.where(during, day_during, day_before)
    # Activity starts the first month that begins after onboarding.
    first_month = np.where(during, join_month + 1, -1)
    return onboarded, first_month


def _merchants(rng: np.random.Generator, n: int, cal: _Calendar, months: int, macro: np.ndarray):
    health, discipline, growth = rng.standard_normal((3, n))
    volatility = rng.standard_normal(n)
    hidden = rng.standard_normal(n)
    industry_i = rng.choice(len(contract.INDUSTRIES), n, p=INDUSTRY_SHARE)
    region_i = rng.choice(len(contract.REGIONS), n, p=REGION_SHARE)
    ind_eff = INDUSTRY_RISK[industry_i]
    risk = -0.7 * health - 0.5 * discipline + 0.35 * volatility - 0.3 * growth + ind_eff
    onboarded, first_month = _onboarding(rng, n, cal, months, joined_share=0.35)
    guest_rate = np.exp(rng.normal(np.log(6.0), 0.8, n) + 0.4 * health)
    ticket = np.exp(rng.normal(np.log(70.0), 0.6, n))
    refund_p = np.clip(
        MERCHANT_REFUND_RATE * np.exp(-MERCHANT_REFUND_DISCIPLINE * discipline - 0.3 * health),
        0.0,
        0.4,
    )
    chargeback_p = np.clip(
        0.003 * np.exp(-MERCHANT_CHARGEBACK_DISCIPLINE * discipline - 0.3 * health), 0.0, 0.1
    )
    # Monthly activity: growth trend, AR(1) wobble scaled by volatility, distress episodes.
    slope = 0.025 * growth + 0.015 * health
    sigma = 0.12 * np.exp(0.5 * volatility)
    mult = np.empty((months, n), dtype=np.float64)
    wobble = rng.standard_normal(n) * sigma
    distress = np.zeros(n, dtype=bool)
    distress_hist = np.empty((months, n), dtype=bool)
    for m in range(months):
        wobble = 0.5 * wobble + sigma * rng.standard_normal(n)
        enter = _sigmoid(-4.2 + 1.2 * risk + 2.0 * macro[m]) > rng.random(n)
        leave = rng.random(n) < 0.15
        dormant = _sigmoid(-3.8 + 1.0 * risk) > rng.random(n)
        distress = np.where(distress, ~leave, enter)
        distress_hist[m] = distress
        mult[m] = np.exp(
            slope * (m - first_month.clip(0))
            + wobble
            - MERCHANT_SLUMP_DEPTH * distress
            - 3.0 * dormant
        )
    return _Merchants(
        ids=pl.Series(
            "merchant_id", np.char.add("M", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
        ),
        first_month=first_month,
        onboarded=onboarded,
        industry=np.asarray(contract.INDUSTRIES)[industry_i],
        region=np.asarray(contract.REGIONS)[region_i],
        consent=rng.random(n) >= 0.03,
        health=health,
        discipline=discipline,
        volatility=volatility,
        growth=growth,
        hidden=hidden,
        risk=risk,
        guest_rate=guest_rate,
        ticket=ticket,
        refund_p=refund_p,
        chargeback_p=chargeback_p,
        mult=mult,
    ), distress_hist


def _consumers(rng: np.random.Generator, n: int, cal: _Calendar, months: int) -> _Consumers:
    stability, discipline, growth = rng.standard_normal((3, n))
    volatility = rng.standard_normal(n)
    hidden = rng.standard_normal(n)
    region_i = rng.choice(len(contract.REGIONS), n, p=REGION_SHARE)
    risk = -0.7 * stability - 0.7 * discipline + 0.3 * volatility - 0.2 * growth
    registered, first_month = _onboarding(rng, n, cal, months, joined_share=0.35)
    start_year = (
        int(cal.month_start[0].astype("datetime64[D]").astype("datetime64[Y]").astype(int)) + 1970
    )
    age = np.clip(rng.normal(33, 9, n) - 2.0 * discipline, 19, 70)
    income = np.exp(rng.normal(np.log(6500), 0.5, n) + 0.3 * stability)
    bills_n = rng.integers(1, 4, n)
    bills = np.exp(rng.normal(np.log(150), 0.6, (n, 3))) * (np.arange(3) < bills_n[:, None])
    # The first bill of about half the consumers is a fixed obligation (rent, or instalments owed
    # to another lender) worth a share of income; the rest are utilities of a few hundred yuan.
    obligation = rng.random(n) < 0.55
    burden = np.clip(np.exp(rng.normal(np.log(0.18), 0.6, n)), 0.03, 0.7)
    bills[:, 0] = np.where(obligation, income * burden, bills[:, 0])
    return _Consumers(
        ids=pl.Series(
            "consumer_id", np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 8))
        ),
        first_month=first_month,
        registered=registered,
        region=np.asarray(contract.REGIONS)[region_i],
        birth_year=(start_year - age).astype(np.int32),
        birth_day=cal.month_start[0] - age * 365.25,
        consent=rng.random(n) >= 0.04,
        stability=stability,
        discipline=discipline,
        volatility=volatility,
        growth=growth,
        hidden=hidden,
        risk=risk,
        risk_q=_rank01(risk),
        income=income,
        regular=_sigmoid(0.5 + 1.8 * stability) > rng.random(n),
        payday=rng.choice(np.array([1, 5, 10, 15, 20, 25, 28]), n),
        purchase_rate=np.exp(rng.normal(np.log(3.2), 0.6, n)),
        spend_share=np.clip(0.45 + 0.15 * risk + rng.normal(0, 0.15, n), 0.1, 1.4),
        bills=bills,
        bill_day=rng.integers(1, 29, (n, 3)),
        bill_miss_p=_sigmoid(-2.7 - 1.6 * discipline),
        transfer_rate=np.exp(rng.normal(np.log(0.6), 0.7, n)),
        reports_balance=rng.random(n) < 0.8,
        balance0=income * np.exp(rng.normal(0.0, 0.6, n) + 0.6 * stability + 0.4 * discipline),
    )


# ----------------------------------------------------------------------------------------------
# Loans and repayments
# ----------------------------------------------------------------------------------------------


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


def _merchant_risk_now(mer: _Merchants, *, distress: np.ndarray, today: int) -> RiskParts:
    """A merchant's risk index at a loan's issue: traits, the state at issue, and interactions.

    The additive part is the trait index, unobserved noise and a distress episode last month.
    Two interactions, each visible in the sales log, make it more than a sum of parts:

    * a slump on loose discipline: a month of collapsing sales is far more dangerous for a
      merchant with many refunds and chargebacks than for a careful one;
    * young and small: a merchant onboarded within the last year with few sales is far riskier
      than either a young merchant with a real customer base or a small, established one (the
      liability of newness and smallness).
    """
    loose = _sigmoid(-2.0 * mer.discipline)
    young = _sigmoid((1.0 - (today - mer.onboarded) / 365.25) / 0.2)
    small = _sigmoid((np.log(MERCHANT_SMALL_SALES) - np.log(mer.guest_rate)) / 0.4)
    return RiskParts(
        traits=MERCHANT_TRAIT_WEIGHT * mer.risk,
        state=0.4 * distress,
        interactions=MERCHANT_SLUMP_LOOSE * distress * loose + MERCHANT_YOUNG_SMALL * young * small,
        hidden=MERCHANT_HIDDEN_WEIGHT * mer.hidden,
    )


def _consumer_risk_now(
    con: _Consumers,
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
    loose = _sigmoid(-2.0 * con.discipline)
    age = (today - con.birth_day) / 365.25
    tenure = (today - con.registered) / 365.25
    thin_file = _sigmoid((25.0 - age) / 1.5) * _sigmoid((1.0 - tenure) / 0.2)
    return RiskParts(
        traits=CONSUMER_TRAIT_WEIGHT * con.risk,
        state=0.6 * unemployed,
        interactions=CONSUMER_DEBT_IRREGULAR * debt * irregular
        + CONSUMER_OVERSPEND * over * loose
        + CONSUMER_THIN_FILE * thin_file,
        hidden=CONSUMER_HIDDEN_WEIGHT * con.hidden,
    )


def _issue_loans(
    rng: np.random.Generator,
    cal: _Calendar,
    m: int,
    *,
    eligible: np.ndarray,
    apply_p: np.ndarray,
    capacity: np.ndarray,
    risk_now: RiskParts,
    habit: np.ndarray,
    intercept: float,
    macro: np.ndarray,
    principal_factor: float,
    cap: float,
    floor: float,
    terms: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """Loans issued in month ``m``: who borrows, how much, and the true default probability."""
    who = np.flatnonzero(eligible & (rng.random(len(eligible)) < apply_p))
    k = len(who)
    term = rng.choice(terms[0], k, p=terms[1]).astype(np.int32)
    raw = capacity[who] * principal_factor * np.exp(rng.normal(0.0, 0.35, k))
    principal = np.floor(np.clip(raw, floor, cap) / 100.0) * 100.0
    leverage = np.log(principal / np.maximum(capacity[who], 1.0))
    window = macro[m : m + 12].mean()
    risk = risk_now.total[who]
    # The loan's own terms (base rate, leverage) and the macro path over its window: known to
    # nobody at issue, it moves every loan of a month together.
    loan_part = intercept + 0.25 * leverage
    macro_part = np.full(k, 1.2 * window)
    return {
        "entity": who,
        "issued": cal.month_start[m] + rng.integers(0, cal.days_in(m), k),
        "principal": principal,
        "term": term,
        "true_pd": _sigmoid(loan_part + risk + macro_part),
        "lateness": risk + LATE_HABIT * habit[who],
        **risk_now.at(who),
        "logit_loan": loan_part,
        "logit_macro": macro_part,
    }


def _schedule(
    rng: np.random.Generator,
    loans: pl.DataFrame,
    *,
    macro: np.ndarray,
    cal: _Calendar,
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
    late_p = _sigmoid(-1.2 + 0.9 * lateness + 1.0 * macro[month_idx] + 0.8 * defaulted[reps])
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


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


class _ChunkWriter:
    """Appends polars frames as Parquet row groups to one file in the contract's schema.

    Writes happen on a background thread (Parquet encoding releases the GIL) so the next month is
    generated while this one is written; at most one chunk waits, which keeps memory bounded and
    the row-group order (hence the bytes) fixed.
    """

    def __init__(self, path: Path, table: str, pool: ThreadPoolExecutor) -> None:
        self.path = path
        self.schema = contract.TABLES[table].schema
        self.writer: pq.ParquetWriter | None = None
        self.pool = pool
        self.pending: Future[None] | None = None
        self.rows = 0

    def _write(self, arrow: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, arrow.schema, compression=PARQUET_COMPRESSION)
        self.writer.write_table(arrow)

    def write(self, df: pl.DataFrame) -> None:
        arrow = df.select(pl.col(c).cast(t) for c, t in self.schema.items()).to_arrow()
        self.wait()
        self.pending = self.pool.submit(self._write, arrow)
        self.rows += df.height

    def wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def close(self) -> None:
        self.wait()
        if self.writer is None:
            self._write(pl.DataFrame(schema=self.schema).to_arrow())
        if self.writer is not None:
            self.writer.close()


def _ids(prefix: str, start: int, n: int, width: int) -> pl.Expr:
    return pl.lit(prefix) + (pl.int_range(start, start + n, dtype=pl.Int64) + 1).cast(
        pl.String
    ).str.zfill(width)


def _lookup(values: pl.Series, idx: np.ndarray) -> pl.Series:
    """``values[idx]`` with null where ``idx`` is negative."""
    s = pl.Series(idx.astype(np.int64))
    missing = np.flatnonzero(idx < 0)
    if len(missing):
        s = s.scatter(missing, None)
    return values.gather(s)


def _channels(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> np.ndarray:
    return rng.choice(len(contract.CHANNELS), n, p=np.asarray(p)).astype(np.int8)


_SHOP_CHANNELS = (0.45, 0.10, 0.20, 0.25)  # app, web, pos, mini_program
_MONEY_CHANNELS = (0.80, 0.20, 0.0, 0.0)
_MK = {k: i for i, k in enumerate(contract.MERCHANT_TXN_KINDS)}
_CK = {k: i for i, k in enumerate(contract.CONSUMER_TXN_KINDS)}
_CK_SIGN = np.array(
    [
        1.0 if contract.CONSUMER_KIND_DIRECTION[k] == "in" else -1.0
        for k in contract.CONSUMER_TXN_KINDS
    ]
)


def _macro(rng: np.random.Generator, months: int, n: int) -> np.ndarray:
    """Macro stress by month (0 is normal, higher is worse): AR(1) noise plus one downturn."""
    x = np.zeros(n)
    eps = rng.standard_normal(n) * 0.08
    for m in range(1, n):  # months, not rows
        x[m] = 0.8 * x[m - 1] + eps[m]
    t0 = rng.integers(max(1, months // 3), max(2, (2 * months) // 3 + 1))
    return x + 0.45 * np.exp(-(((np.arange(n) - t0) / 3.0) ** 2))


def _frame(**cols: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(cols)


def generate(
    spec: WorldSpec,
    raw_dir: Path,
    truth_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write a synthetic world in the input contract and the true PD of every loan.

    Writes ``raw_dir/<table>.parquet`` for each contract table except ``outcomes``, and
    ``truth_dir/loans.parquet`` (``loan_id``, ``segment``, ``entity_id``, ``issued_on``,
    ``true_pd``, ``defaulted`` and the borrower's latent traits) so calibration can be checked
    against the truth. Files are written to a temporary folder and moved into place at the end,
    so a failure leaves no half-written table. Returns the rows written per table.
    """
    say = progress or (lambda _msg: None)
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".generate-", dir=raw_dir))
    try:
        counts = _generate_into(spec, tmp, say)
        for table in counts:
            (tmp / f"{table}.parquet").replace(raw_dir / f"{table}.parquet")
        (tmp / "truth_loans.parquet").replace(truth_dir / "loans.parquet")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _generate_into(spec: WorldSpec, out: Path, say: Callable[[str], None]) -> dict[str, int]:
    months = spec.months
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
    cal = _calendar(spec.start, months)
    macro = _macro(rng, months, months + 13)
    say(f"entities: {spec.merchants} merchants, {spec.consumers} consumers")
    mer, distress = _merchants(rng, spec.merchants, cal, months, macro)
    con = _consumers(rng, spec.consumers, cal, months)
    _write_entities(out, mer, con)

    with ThreadPoolExecutor(max_workers=1) as pool:
        m_writer = _ChunkWriter(
            out / "merchant_transactions.parquet", "merchant_transactions", pool
        )
        c_writer = _ChunkWriter(
            out / "consumer_transactions.parquet", "consumer_transactions", pool
        )
        loans, schedules = _months(
            spec,
            cal=cal,
            macro=macro,
            mer=mer,
            distress=distress,
            con=con,
            m_writer=m_writer,
            c_writer=c_writer,
            say=say,
        )
        m_writer.close()
        c_writer.close()
    say("loans and repayments")
    all_loans = pl.concat(loans) if loans else None
    n_rep = _write_loans(out, all_loans, schedules, mer, con)
    return {
        "merchants": spec.merchants,
        "consumers": spec.consumers,
        "merchant_transactions": m_writer.rows,
        "consumer_transactions": c_writer.rows,
        "loans": 0 if all_loans is None else all_loans.height,
        "repayments": n_rep,
    }


def _months(
    spec: WorldSpec,
    *,
    cal: _Calendar,
    macro: np.ndarray,
    mer: _Merchants,
    distress: np.ndarray,
    con: _Consumers,
    m_writer: _ChunkWriter,
    c_writer: _ChunkWriter,
    say: Callable[[str], None],
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Month by month: issue loans, then write the month's consumer and merchant transactions."""
    months = spec.months
    n_m, n_c = spec.merchants, spec.consumers
    month_seeds = np.random.SeedSequence([spec.seed, 1]).spawn(months)
    end_day = int(cal.month_start[months])
    sales_hist = np.zeros((months, n_m))
    income_hist = np.zeros((months, n_c))
    balance = con.balance0.copy()
    unemployed = np.zeros(n_c, dtype=bool)
    unemployed_hist = np.zeros((months, n_c), dtype=bool)
    busy_m = np.full(n_m, -1)
    busy_c = np.full(n_c, -1)
    loans: list[pl.DataFrame] = []
    schedules: list[pl.DataFrame] = []
    n_loans = 0
    m_txn = 0
    c_txn = 0
    seg_terms = {
        "merchant": (np.array([3, 6, 12]), np.array([0.30, 0.45, 0.25])),
        "consumer": (np.array([3, 6, 12]), np.array([0.25, 0.40, 0.35])),
    }

    for m in range(months):
        say(f"month {m + 1}/{months}")
        r = np.random.default_rng(month_seeds[m])
        lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
        act_m = mer.first_month <= m
        act_c = con.first_month <= m

        # ---- consumers' state this month: employment and income level ----
        enter = _sigmoid(-4.0 - 1.0 * con.stability - 0.4 * con.discipline + 2.0 * macro[m])
        unemployed = np.where(unemployed, r.random(n_c) >= 0.3, r.random(n_c) < enter)
        unemployed_hist[m] = unemployed
        level = con.income * np.exp(0.006 * con.growth * (m - con.first_month.clip(0)))

        # ---- loans issued this month (before this month's events are known) ----
        if m >= FIRST_LOAN_MONTH:
            hist = slice(max(0, m - 3), m)
            for seg in ("merchant", "consumer"):
                if seg == "merchant":
                    cap = sales_hist[hist].mean(axis=0)
                    elig = (mer.first_month <= m - MIN_HISTORY_MONTHS) & (cap > 0)
                    risk_now = _merchant_risk_now(
                        mer, distress=distress[m - 1], today=int(cal.month_start[m])
                    )
                    apply_p = 0.40 * np.exp(0.25 * mer.risk) * np.where(busy_m > m, 0.6, 1.0)
                    kw = {"principal_factor": 1.5, "cap": 5_000_000.0, "floor": 1_000.0}
                    intercept, owner, habit = MERCHANT_INTERCEPT, mer.ids, -mer.discipline
                else:
                    cap = income_hist[hist].mean(axis=0)
                    elig = (con.first_month <= m - MIN_HISTORY_MONTHS) & (cap > 0)
                    risk_now = _consumer_risk_now(
                        con,
                        level=level,
                        unemployed=unemployed_hist[m - 1],
                        today=int(cal.month_start[m]),
                    )
                    apply_p = 0.18 * np.exp(0.25 * con.risk) * np.where(busy_c > m, 0.5, 1.0)
                    kw = {"principal_factor": 1.2, "cap": 200_000.0, "floor": 500.0}
                    intercept, owner, habit = CONSUMER_INTERCEPT, con.ids, -con.discipline
                issued = _issue_loans(
                    r,
                    cal,
                    m,
                    eligible=elig,
                    apply_p=apply_p,
                    capacity=cap,
                    risk_now=risk_now,
                    habit=habit,
                    intercept=intercept,
                    macro=macro,
                    terms=seg_terms[seg],
                    **kw,
                )
                k = len(issued["entity"])
                if seg == "merchant":
                    busy_m[issued["entity"]] = m + issued["term"]
                else:
                    busy_c[issued["entity"]] = m + issued["term"]
                frame = pl.DataFrame(
                    {
                        "loan_id": pl.select(_ids("L", n_loans, k, 9)).to_series(),
                        "segment": pl.repeat(seg, k, eager=True, dtype=pl.String),
                        "entity": issued["entity"],
                        "entity_id": owner.gather(issued["entity"]),
                        "issued": issued["issued"],
                        "principal": issued["principal"],
                        "term": issued["term"],
                        "true_pd": issued["true_pd"],
                        "defaulted": r.random(k) < issued["true_pd"],
                        "lateness": issued["lateness"],
                        **{c: issued[c] for c in LOGIT_PARTS},
                    }
                )
                n_loans += k
                loans.append(frame)
                schedules.append(
                    _schedule(
                        r,
                        frame,
                        macro=macro,
                        cal=cal,
                        end_day=end_day,
                        monthly_rate=0.015 if seg == "merchant" else 0.02,
                    ).with_columns(
                        pl.lit(seg).alias("segment"),
                        pl.Series(np.repeat(issued["entity"], issued["term"])).alias("entity"),
                    )
                )

        # ---- consumer income ----
        reg = act_c & con.regular & ~unemployed
        pay_day = lo + np.minimum(con.payday, hi - lo) - 1
        c_inc_reg = np.flatnonzero(reg)
        # Less stable gig earners get paid less often (more months without any income).
        gig_rate = np.where(con.regular, 0.0, 2.5 * np.exp(0.5 * con.stability))
        gig_rate = gig_rate * np.where(unemployed, 0.3, 1.0)
        gig_rate = np.where(con.regular & unemployed, 0.8, gig_rate) * act_c
        n_gig = r.poisson(gig_rate)
        c_gig = np.repeat(np.arange(n_c), n_gig)
        gig_scale = np.where(unemployed, 0.25 / 0.8, 1.0 / 2.5)[c_gig]
        inc_c = np.concatenate([c_inc_reg, c_gig])
        inc_day = np.concatenate([pay_day[c_inc_reg], cal.sample_days(r, m, len(c_gig))])
        inc_amt = np.concatenate(
            [
                level[c_inc_reg] * np.exp(r.normal(0, 0.04, len(c_inc_reg))),
                level[c_gig]
                * gig_scale
                * np.exp(r.normal(-0.1, 0.5 * np.exp(0.4 * con.volatility[c_gig]))),
            ]
        )
        income_hist[m] = np.bincount(inc_c, weights=inc_amt, minlength=n_c)

        # ---- consumer purchases, and the merchant sales they make ----
        p_rate = con.purchase_rate * cal.season[m] * act_c * np.where(unemployed, 0.7, 1.0)
        n_p = r.poisson(p_rate)
        p_c = np.repeat(np.arange(n_c), n_p)
        ticket = con.spend_share * level / con.purchase_rate
        p_amt = ticket[p_c] * np.exp(r.normal(-0.18, 0.6, len(p_c)))
        p_day = cal.sample_days(r, m, len(p_c))
        p_ts = _timestamps(r, p_day)
        p_chan = _channels(r, len(p_c), _SHOP_CHANNELS)
        # Assortative choice of merchant: position in the risk-ordered, size-weighted merchants.
        attract = mer.guest_rate * mer.mult[m] * act_m
        p_m = np.full(len(p_c), -1)
        if attract.sum() > 0:
            order = np.argsort(mer.risk, kind="stable")
            cw = np.cumsum(attract[order])
            cw /= cw[-1]
            x = np.abs(con.risk_q[p_c] + 0.2 * r.standard_normal(len(p_c)))
            x = 1.0 - np.abs(1.0 - x)
            x = np.where(r.random(len(p_c)) < 0.3, r.random(len(p_c)), x)
            pick = order[np.minimum(np.searchsorted(cw, x, side="right"), n_m - 1)]
            linked = r.random(len(p_c)) < 0.65
            p_m = np.where(linked, pick, -1)

        # ---- bills, transfers, repayments ----
        b_c_parts, b_day_parts, b_amt_parts = [], [], []
        for j in range(3):  # three bill slots, not rows
            miss = con.bill_miss_p * np.where(unemployed, 3.0, 1.0)
            has = act_c & (con.bills[:, j] > 0) & (r.random(n_c) >= miss)
            idx = np.flatnonzero(has)
            b_c_parts.append(idx)
            b_day_parts.append(lo + np.minimum(con.bill_day[idx, j], hi - lo) - 1)
            b_amt_parts.append(con.bills[idx, j] * np.exp(r.normal(0, 0.1, len(idx))))
        b_c = np.concatenate(b_c_parts)
        b_day = np.concatenate(b_day_parts)
        b_amt = np.concatenate(b_amt_parts)

        act_idx = np.flatnonzero(act_c)
        n_t = r.poisson(con.transfer_rate * act_c) if len(act_idx) > 1 else np.zeros(n_c, int)
        t_c = np.repeat(np.arange(n_c), n_t)
        pos = r.integers(0, max(1, len(act_idx)), len(t_c))
        to = act_idx[pos] if len(act_idx) else t_c
        to = np.where(to == t_c, act_idx[(pos + 1) % max(1, len(act_idx))], to)
        t_amt = level[t_c] * 0.08 * np.exp(r.normal(0, 0.8, len(t_c)) + 0.2 * con.risk[t_c])
        t_day = cal.sample_days(r, m, len(t_c))
        t_ts = _timestamps(r, t_day)
        x_c = np.repeat(np.arange(n_c), r.poisson(0.25 * np.exp(0.4 * con.risk) * act_c))
        x_amt = level[x_c] * 0.1 * np.exp(r.normal(0, 0.8, len(x_c)))
        x_ts = _timestamps(r, cal.sample_days(r, m, len(x_c)))

        rep = (
            pl.concat(schedules).filter(
                (pl.col("segment") == "consumer")
                & (pl.col("amount_paid") > 0)
                & (pl.col("paid_on").cast(pl.Int64) >= lo)
                & (pl.col("paid_on").cast(pl.Int64) < hi)
            )
            if schedules
            else pl.DataFrame({"entity": [], "paid_on": [], "amount_paid": []})
        )
        rep_c = rep["entity"].to_numpy().astype(np.int64)
        rep_day = rep["paid_on"].cast(pl.Int64).to_numpy().astype(np.int64)
        rep_amt = rep["amount_paid"].to_numpy().astype(np.float64)

        # ---- assemble consumer transactions, with balances ----
        n_inc, n_b, n_x, n_r = len(inc_c), len(b_c), len(x_c), len(rep_c)
        cons = _frame(
            c=np.concatenate([inc_c, p_c, b_c, t_c, to, x_c, rep_c]),
            ts=np.concatenate(
                [
                    _timestamps(r, inc_day),
                    p_ts,
                    _timestamps(r, b_day),
                    t_ts,
                    t_ts,
                    x_ts,
                    _timestamps(r, rep_day),
                ]
            ),
            kind=np.concatenate(
                [
                    np.full(n_inc, _CK["income"]),
                    np.full(len(p_c), _CK["purchase"]),
                    np.full(n_b, _CK["bill_payment"]),
                    np.full(len(t_c), _CK["transfer_out"]),
                    np.full(len(t_c), _CK["transfer_in"]),
                    np.full(n_x, _CK["transfer_in"]),
                    np.full(n_r, _CK["repayment"]),
                ]
            ).astype(np.int8),
            amount=np.maximum(
                np.round(np.concatenate([inc_amt, p_amt, b_amt, t_amt, t_amt, x_amt, rep_amt]), 2),
                0.01,
            ),
            cp_m=np.concatenate(
                [np.full(n_inc, -1), p_m, np.full(n_b + 2 * len(t_c) + n_x + n_r, -1)]
            ),
            cp_c=np.concatenate(
                [np.full(n_inc + len(p_c) + n_b, -1), to, t_c, np.full(n_x + n_r, -1)]
            ),
            chan=np.concatenate(
                [
                    _channels(r, n_inc, _MONEY_CHANNELS),
                    p_chan,
                    _channels(r, n_b, _MONEY_CHANNELS),
                    np.tile(_channels(r, len(t_c), _MONEY_CHANNELS), 2),
                    _channels(r, n_x, _MONEY_CHANNELS),
                    np.zeros(n_r, dtype=np.int8),
                ]
            ),
        )
        cons = cons.with_columns(
            signed=cons["amount"].to_numpy() * _CK_SIGN[cons["kind"].to_numpy()],
            carry=balance[cons["c"].to_numpy()],
        )
        cons = (
            cons.with_row_index("seq")
            .sort(["c", "ts", "seq"])
            .with_columns((pl.col("signed").cum_sum().over("c") + pl.col("carry")).alias("run"))
            .with_columns(
                (pl.col("run") - pl.col("run").cum_min().over("c").clip(upper_bound=0.0)).alias(
                    "bal"
                )
            )
        )
        last = cons.group_by("c").agg(pl.col("bal").last())
        balance[last["c"].to_numpy()] = last["bal"].to_numpy()
        cons = cons.sort(["ts", "seq"])
        c_idx = cons["c"].to_numpy()
        c_writer.write(
            pl.DataFrame(
                {
                    "txn_id": pl.select(_ids("CT", c_txn, cons.height, 10)).to_series(),
                    "consumer_id": con.ids.gather(c_idx),
                    "ts": cons["ts"].cast(contract.TS),
                    "kind": pl.Series(contract.CONSUMER_TXN_KINDS).gather(cons["kind"]),
                    "direction": pl.Series(
                        [contract.CONSUMER_KIND_DIRECTION[k] for k in contract.CONSUMER_TXN_KINDS]
                    ).gather(cons["kind"]),
                    "amount": cons["amount"],
                    "counterparty_id": _lookup(mer.ids, cons["cp_m"].to_numpy()).zip_with(
                        cons["cp_m"] >= 0, _lookup(con.ids, cons["cp_c"].to_numpy())
                    ),
                    "channel": pl.Series(contract.CHANNELS).gather(cons["chan"]),
                    "balance_after": pl.Series(np.round(cons["bal"].to_numpy(), 2)).scatter(
                        np.flatnonzero(~con.reports_balance[c_idx]), None
                    ),
                }
            )
        )
        c_txn += cons.height
        del cons

        # ---- merchant transactions ----
        g_rate = mer.guest_rate * mer.mult[m] * cal.season[m] * act_m
        g_m = np.repeat(np.arange(n_m), r.poisson(g_rate))
        g_amt = mer.ticket[g_m] * np.exp(r.normal(-0.18, 0.6, len(g_m)))
        g_ts = _timestamps(r, cal.sample_days(r, m, len(g_m)))
        lk = p_m >= 0
        s_m = np.concatenate([g_m, p_m[lk]])
        s_ts = np.concatenate([g_ts, p_ts[lk]])
        s_amt = np.maximum(np.round(np.concatenate([g_amt, p_amt[lk]]), 2), 0.01)
        s_buyer = np.concatenate([np.full(len(g_m), -1), p_c[lk]])
        s_chan = np.concatenate([_channels(r, len(g_m), _SHOP_CHANNELS), p_chan[lk]])
        ns = len(s_m)
        rf = r.random(ns) < mer.refund_p[s_m]
        rf_ts = s_ts[rf] + (r.geometric(0.25, rf.sum()) * DAY_US + r.integers(0, DAY_US, rf.sum()))
        rf_amt = np.where(r.random(rf.sum()) < 0.8, 1.0, r.uniform(0.2, 0.9, rf.sum()))
        rf_amt = np.maximum(np.round(s_amt[rf] * rf_amt, 2), 0.01)
        cb = r.random(ns) < mer.chargeback_p[s_m]
        cb_ts = s_ts[cb] + r.integers(10, 61, cb.sum()) * DAY_US
        first_half = s_ts < (lo + 15) * DAY_US
        sales_hist[m] = np.bincount(s_m, weights=s_amt, minlength=n_m)
        half1 = np.bincount(s_m[first_half], weights=s_amt[first_half], minlength=n_m)
        half2 = sales_hist[m] - half1
        refunds = np.bincount(s_m[rf], weights=rf_amt, minlength=n_m)
        po1 = np.flatnonzero(np.round(half1 * 0.994, 2) > 0)
        net2 = np.round(half2 * 0.994 - refunds, 2)
        po2 = np.flatnonzero(net2 > 0)
        fee = np.round(sales_hist[m] * 0.006, 2)
        fe = np.flatnonzero(fee > 0)
        fee_ts = (hi - 1) * DAY_US + 20 * 3_600_000_000
        po1_ts = (lo + 15) * DAY_US + 2 * 3_600_000_000
        po2_ts = (hi - 1) * DAY_US + 21 * 3_600_000_000
        mt = _frame(
            mi=np.concatenate([s_m, s_m[rf], s_m[cb], po1, po2, fe]),
            ts=np.concatenate(
                [
                    s_ts,
                    rf_ts,
                    cb_ts,
                    np.full(len(po1), po1_ts),
                    np.full(len(po2), po2_ts),
                    np.full(len(fe), fee_ts),
                ]
            ),
            kind=np.concatenate(
                [
                    np.full(ns, _MK["sale"]),
                    np.full(rf.sum(), _MK["refund"]),
                    np.full(cb.sum(), _MK["chargeback"]),
                    np.full(len(po1) + len(po2), _MK["payout"]),
                    np.full(len(fe), _MK["fee"]),
                ]
            ).astype(np.int8),
            amount=np.concatenate(
                [s_amt, rf_amt, s_amt[cb], np.round(half1[po1] * 0.994, 2), net2[po2], fee[fe]]
            ),
            buyer=np.concatenate(
                [s_buyer, s_buyer[rf], s_buyer[cb], np.full(len(po1) + len(po2) + len(fe), -1)]
            ),
            chan=np.concatenate(
                [
                    s_chan,
                    s_chan[rf],
                    s_chan[cb],
                    np.zeros(len(po1) + len(po2) + len(fe), dtype=np.int8),
                ]
            ),
        )
        # Refunds and chargebacks of late sales may fall after the world's end: not observed.
        mt = mt.with_row_index("seq").filter(pl.col("ts") < end_day * DAY_US).sort(["ts", "seq"])
        m_writer.write(
            pl.DataFrame(
                {
                    "txn_id": pl.select(_ids("MT", m_txn, mt.height, 10)).to_series(),
                    "merchant_id": mer.ids.gather(mt["mi"]),
                    "ts": mt["ts"].cast(contract.TS),
                    "kind": pl.Series(contract.MERCHANT_TXN_KINDS).gather(mt["kind"]),
                    "amount": mt["amount"],
                    "buyer_id": _lookup(con.ids, mt["buyer"].to_numpy()),
                    "channel": pl.Series(contract.CHANNELS).gather(mt["chan"]),
                }
            )
        )
        m_txn += mt.height
        del mt

    return loans, schedules


def _write_entities(out: Path, mer: _Merchants, con: _Consumers) -> None:
    pl.DataFrame(
        {
            "merchant_id": mer.ids,
            "onboarded_on": mer.onboarded.astype("datetime64[D]"),
            "industry": mer.industry,
            "region": mer.region,
            "consent": mer.consent,
        },
        schema=contract.TABLES["merchants"].schema,
    ).write_parquet(out / "merchants.parquet", compression=PARQUET_COMPRESSION)
    pl.DataFrame(
        {
            "consumer_id": con.ids,
            "registered_on": con.registered.astype("datetime64[D]"),
            "region": con.region,
            "birth_year": con.birth_year,
            "consent": con.consent,
        },
        schema=contract.TABLES["consumers"].schema,
    ).write_parquet(out / "consumers.parquet", compression=PARQUET_COMPRESSION)


def _write_loans(
    out: Path,
    loans: pl.DataFrame | None,
    schedules: list[pl.DataFrame],
    mer: _Merchants,
    con: _Consumers,
) -> int:
    loan_schema = contract.TABLES["loans"].schema
    rep_schema = contract.TABLES["repayments"].schema
    if loans is None or loans.height == 0:
        pl.DataFrame(schema=loan_schema).write_parquet(out / "loans.parquet")
        pl.DataFrame(schema=rep_schema).write_parquet(out / "repayments.parquet")
        pl.DataFrame(
            schema={"loan_id": pl.String, "segment": pl.String, "true_pd": pl.Float64}
        ).write_parquet(out / "truth_loans.parquet")
        return 0
    loans.select(
        "loan_id",
        "segment",
        "entity_id",
        pl.col("issued").cast(pl.Int32).cast(pl.Date).alias("issued_on"),
        "principal",
        pl.col("term").alias("term_months"),
    ).cast(dict(loan_schema)).write_parquet(out / "loans.parquet", compression=PARQUET_COMPRESSION)
    reps = pl.concat(schedules).select(rep_schema.names()).cast(dict(rep_schema))
    reps.write_parquet(out / "repayments.parquet", compression=PARQUET_COMPRESSION)
    is_m = (loans["segment"] == "merchant").to_numpy()
    ent = loans["entity"].to_numpy()
    em, ec = np.where(is_m, ent, 0), np.where(is_m, 0, ent)

    def trait(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(is_m, a[em], b[ec])

    loans.select(
        "loan_id",
        "segment",
        "entity_id",
        pl.col("issued").cast(pl.Int32).cast(pl.Date).alias("issued_on"),
        "true_pd",
        "defaulted",
        *LOGIT_PARTS,
    ).with_columns(
        pl.Series("risk_index", trait(mer.risk, con.risk)),
        pl.Series("health_or_stability", trait(mer.health, con.stability)),
        pl.Series("discipline", trait(mer.discipline, con.discipline)),
        pl.Series("volatility", trait(mer.volatility, con.volatility)),
        pl.Series("growth", trait(mer.growth, con.growth)),
        pl.Series("hidden", trait(mer.hidden, con.hidden)),
    ).write_parquet(out / "truth_loans.parquet", compression=PARQUET_COMPRESSION)
    return reps.height
