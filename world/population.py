"""The world's merchants and consumers: onboarding, latent traits and the behaviour they drive.

Every merchant and consumer has latent traits (business health or income stability, discipline,
volatility, growth) that drive its behaviour (sales level, trend and volatility, refunds,
chargebacks, income regularity, spending ratio, bill payments, balances) and, through the same
traits, its default risk (:mod:`world.risk`). Traits are standard normal; the risk index is a
fixed mix of them (higher is riskier).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.contract import tables as contract
from world.numeric import rank01, sigmoid
from world.seasons import Calendar

# How entities spread over industries and regions, and the industries' risk offsets.
INDUSTRY_SHARE = np.array([0.18, 0.10, 0.10, 0.22, 0.10, 0.08, 0.12, 0.10])
INDUSTRY_RISK = np.array([0.10, 0.05, -0.05, 0.20, -0.10, 0.25, -0.05, 0.0])
REGION_SHARE = np.array([0.16, 0.13, 0.11, 0.09, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.05, 0.09])
MERCHANT_SLUMP_DEPTH = 2.0  # a distress episode cuts sales by this much, in log
MERCHANT_REFUND_RATE = 0.06  # the refund rate of a merchant of average discipline and health
# Loose merchants fulfil badly: each SD less discipline multiplies refunds by e^0.8 and
# chargebacks by e (a SD less health, both by e^0.3), so the refund history is the log's clearest
# read of discipline, the trait the slump interaction turns on.
MERCHANT_REFUND_DISCIPLINE = 0.8
MERCHANT_CHARGEBACK_DISCIPLINE = 1.0


@dataclass
class Merchants:
    """The merchants: identity, traits and behaviour, one array entry per merchant."""

    ids: pl.Series
    first_month: np.ndarray  # first month index with activity (negative: before the world)
    onboarded: np.ndarray  # day numbers
    industry: np.ndarray
    region: np.ndarray
    consent: np.ndarray
    gender: np.ndarray  # the principal owner's (None: not disclosed); world.groups
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
class Consumers:
    """The consumers: identity, traits and behaviour, one array entry per consumer."""

    ids: pl.Series
    first_month: np.ndarray
    registered: np.ndarray
    region: np.ndarray
    birth_year: np.ndarray
    birth_day: np.ndarray  # day number of birth (the world writes only the year)
    consent: np.ndarray
    gender: np.ndarray  # None: not disclosed; world.groups
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


def onboarding(
    rng: np.random.Generator, n: int, cal: Calendar, months: int, joined_share: float
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


def _entity_ids(name: str, prefix: str, n: int, width: int) -> pl.Series:
    return pl.Series(
        name, np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width))
    )


def draw_merchants(
    rng: np.random.Generator,
    n: int,
    cal: Calendar,
    months: int,
    macro: np.ndarray,
    *,
    gender: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> tuple[Merchants, np.ndarray]:
    """``n`` merchants, and their distress by month (``(months, n)``, True in an episode).

    ``gender`` is the owners' (:func:`world.groups.draw_gender`; none held when omitted);
    ``shift`` (a planted bias, :class:`world.groups.GroupBias`) lowers each merchant's health
    and discipline by that much before anything is derived from them.
    """
    health, discipline, growth = rng.standard_normal((3, n))
    if shift is not None:
        health, discipline = health - shift, discipline - shift
    volatility = rng.standard_normal(n)
    hidden = rng.standard_normal(n)
    industry_i = rng.choice(len(contract.INDUSTRIES), n, p=INDUSTRY_SHARE)
    region_i = rng.choice(len(contract.REGIONS), n, p=REGION_SHARE)
    ind_eff = INDUSTRY_RISK[industry_i]
    risk = -0.7 * health - 0.5 * discipline + 0.35 * volatility - 0.3 * growth + ind_eff
    onboarded, first_month = onboarding(rng, n, cal, months, joined_share=0.35)
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
    mult, distress_hist = _activity(
        rng,
        months,
        risk=risk,
        macro=macro,
        slope=0.025 * growth + 0.015 * health,
        sigma=0.12 * np.exp(0.5 * volatility),
        since=first_month.clip(0),
    )
    return Merchants(
        ids=_entity_ids("merchant_id", "M", n, 7),
        first_month=first_month,
        onboarded=onboarded,
        industry=np.asarray(contract.INDUSTRIES)[industry_i],
        region=np.asarray(contract.REGIONS)[region_i],
        consent=rng.random(n) >= 0.03,
        gender=np.full(n, None, dtype=object) if gender is None else gender,
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


def _activity(
    rng: np.random.Generator,
    months: int,
    *,
    risk: np.ndarray,
    macro: np.ndarray,
    slope: np.ndarray,
    sigma: np.ndarray,
    since: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Merchants' monthly activity: growth trend, AR(1) wobble scaled by volatility, distress."""
    n = len(risk)
    mult = np.empty((months, n), dtype=np.float64)
    wobble = rng.standard_normal(n) * sigma
    distress = np.zeros(n, dtype=bool)
    distress_hist = np.empty((months, n), dtype=bool)
    for m in range(months):
        wobble = 0.5 * wobble + sigma * rng.standard_normal(n)
        enter = sigmoid(-4.2 + 1.2 * risk + 2.0 * macro[m]) > rng.random(n)
        leave = rng.random(n) < 0.15
        dormant = sigmoid(-3.8 + 1.0 * risk) > rng.random(n)
        distress = np.where(distress, ~leave, enter)
        distress_hist[m] = distress
        mult[m] = np.exp(
            slope * (m - since) + wobble - MERCHANT_SLUMP_DEPTH * distress - 3.0 * dormant
        )
    return mult, distress_hist


def draw_consumers(
    rng: np.random.Generator,
    n: int,
    cal: Calendar,
    months: int,
    *,
    gender: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> Consumers:
    """``n`` consumers with their traits, income, bills and habits.

    ``gender`` is theirs (:func:`world.groups.draw_gender`; none held when omitted); ``shift``
    (a planted bias, :class:`world.groups.GroupBias`) lowers each consumer's income stability
    and discipline by that much before anything but age is derived from them.
    """
    stability, discipline, growth = rng.standard_normal((3, n))
    # Age follows the drawn discipline, so a planted bias does not make its group older.
    drawn_discipline = discipline
    if shift is not None:
        stability, discipline = stability - shift, discipline - shift
    volatility = rng.standard_normal(n)
    hidden = rng.standard_normal(n)
    region_i = rng.choice(len(contract.REGIONS), n, p=REGION_SHARE)
    risk = -0.7 * stability - 0.7 * discipline + 0.3 * volatility - 0.2 * growth
    registered, first_month = onboarding(rng, n, cal, months, joined_share=0.35)
    start_year = (
        int(cal.month_start[0].astype("datetime64[D]").astype("datetime64[Y]").astype(int)) + 1970
    )
    age = np.clip(rng.normal(33, 9, n) - 2.0 * drawn_discipline, 19, 70)
    income = np.exp(rng.normal(np.log(6500), 0.5, n) + 0.3 * stability)
    bills_n = rng.integers(1, 4, n)
    bills = np.exp(rng.normal(np.log(150), 0.6, (n, 3))) * (np.arange(3) < bills_n[:, None])
    # The first bill of about half the consumers is a fixed obligation (rent, or instalments owed
    # to another lender) worth a share of income; the rest are utilities of a few hundred yuan.
    obligation = rng.random(n) < 0.55
    burden = np.clip(np.exp(rng.normal(np.log(0.18), 0.6, n)), 0.03, 0.7)
    bills[:, 0] = np.where(obligation, income * burden, bills[:, 0])
    return Consumers(
        ids=_entity_ids("consumer_id", "C", n, 8),
        first_month=first_month,
        registered=registered,
        region=np.asarray(contract.REGIONS)[region_i],
        birth_year=(start_year - age).astype(np.int32),
        birth_day=cal.month_start[0] - age * 365.25,
        consent=rng.random(n) >= 0.04,
        gender=np.full(n, None, dtype=object) if gender is None else gender,
        stability=stability,
        discipline=discipline,
        volatility=volatility,
        growth=growth,
        hidden=hidden,
        risk=risk,
        risk_q=rank01(risk),
        income=income,
        regular=sigmoid(0.5 + 1.8 * stability) > rng.random(n),
        payday=rng.choice(np.array([1, 5, 10, 15, 20, 25, 28]), n),
        purchase_rate=np.exp(rng.normal(np.log(3.2), 0.6, n)),
        spend_share=np.clip(0.45 + 0.15 * risk + rng.normal(0, 0.15, n), 0.1, 1.4),
        bills=bills,
        bill_day=rng.integers(1, 29, (n, 3)),
        bill_miss_p=sigmoid(-2.7 - 1.6 * discipline),
        transfer_rate=np.exp(rng.normal(np.log(0.6), 0.7, n)),
        reports_balance=rng.random(n) < 0.8,
        balance0=income * np.exp(rng.normal(0.0, 0.6, n) + 0.6 * stability + 0.4 * discipline),
    )
