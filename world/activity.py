"""A month of transactions, consumers' and merchants', as the world's steps draw them.

Consumers receive income, buy, pay bills, send and receive transfers and repay loans, with
running balances; merchants make sales, take refunds and chargebacks, and get payouts and fees.
Merchants and consumers are linked: a consumer's purchase from a platform merchant is also that
merchant's sale (``buyer_id``), and risky consumers tend to buy from riskier merchants. Each step
draws from the month's random generator in a fixed order, so the same seed gives the same
month. Events are kept as entity indices and kind codes here; :mod:`world.writer` turns them
into contract rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.contract import tables as contract
from world.numeric import sigmoid
from world.population import Consumers, Merchants
from world.seasons import DAY_US, Calendar, timestamps

SHOP_CHANNELS = (0.45, 0.10, 0.20, 0.25)  # app, web, pos, mini_program
MONEY_CHANNELS = (0.80, 0.20, 0.0, 0.0)
MERCHANT_KIND = {k: i for i, k in enumerate(contract.MERCHANT_TXN_KINDS)}
CONSUMER_KIND = {k: i for i, k in enumerate(contract.CONSUMER_TXN_KINDS)}
CONSUMER_SIGN = np.array(
    [
        1.0 if contract.CONSUMER_KIND_DIRECTION[k] == "in" else -1.0
        for k in contract.CONSUMER_TXN_KINDS
    ]
)


def channels(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> np.ndarray:
    """Channel codes (indices into the contract's channels) of ``n`` events."""
    return rng.choice(len(contract.CHANNELS), n, p=np.asarray(p)).astype(np.int8)


@dataclass(frozen=True)
class Payments:
    """A month's payments of one kind, dated to the day: consumer index, day number, amount."""

    c: np.ndarray
    day: np.ndarray
    amount: np.ndarray
    slot: np.ndarray | None = None  # which of the consumer's bills, for bills

    def per_consumer(self, n: int) -> np.ndarray:
        """The month's total by consumer (``n`` consumers)."""
        return np.bincount(self.c, weights=self.amount, minlength=n)


@dataclass(frozen=True)
class Transfers:
    """A month's transfers: sender, receiver (-1: from outside the world), timestamp, amount."""

    c: np.ndarray
    to: np.ndarray
    ts: np.ndarray
    amount: np.ndarray


@dataclass(frozen=True)
class Purchases:
    """A month's purchases: buyer, merchant (-1: a shop outside the platform), when, how much."""

    c: np.ndarray
    merchant: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    chan: np.ndarray


def next_unemployed(
    rng: np.random.Generator, con: Consumers, macro: float, unemployed: np.ndarray
) -> np.ndarray:
    """Who is out of work this month, given last month and the month's macro stress."""
    enter = sigmoid(-4.0 - 1.0 * con.stability - 0.4 * con.discipline + 2.0 * macro)
    return np.where(
        unemployed, rng.random(len(unemployed)) >= 0.3, rng.random(len(unemployed)) < enter
    )


def income_level(con: Consumers, m: int) -> np.ndarray:
    """Each consumer's monthly income level in month ``m`` (grown since they joined)."""
    return con.income * np.exp(0.006 * con.growth * (m - con.first_month.clip(0)))


def salaried(con: Consumers, *, unemployed: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Who is paid a salary this month: active regular earners in work.

    :func:`income` pays these first (in consumer order), then the gig income of the rest.
    """
    return active & con.regular & ~unemployed


def income(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    *,
    level: np.ndarray,
    unemployed: np.ndarray,
    active: np.ndarray,
) -> Payments:
    """Salaries on paydays for the employed, and gig income on random days.

    The salaries (of :func:`salaried`, in consumer order) come first, then the gig payments.
    """
    n_c = len(active)
    lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
    reg = salaried(con, unemployed=unemployed, active=active)
    pay_day = lo + np.minimum(con.payday, hi - lo) - 1
    c_reg = np.flatnonzero(reg)
    # Less stable gig earners get paid less often (more months without any income).
    gig_rate = np.where(con.regular, 0.0, 2.5 * np.exp(0.5 * con.stability))
    gig_rate = gig_rate * np.where(unemployed, 0.3, 1.0)
    gig_rate = np.where(con.regular & unemployed, 0.8, gig_rate) * active
    n_gig = rng.poisson(gig_rate)
    c_gig = np.repeat(np.arange(n_c), n_gig)
    gig_scale = np.where(unemployed, 0.25 / 0.8, 1.0 / 2.5)[c_gig]
    return Payments(
        c=np.concatenate([c_reg, c_gig]),
        day=np.concatenate([pay_day[c_reg], cal.sample_days(rng, m, len(c_gig))]),
        amount=np.concatenate(
            [
                level[c_reg] * np.exp(rng.normal(0, 0.04, len(c_reg))),
                level[c_gig]
                * gig_scale
                * np.exp(rng.normal(-0.1, 0.5 * np.exp(0.4 * con.volatility[c_gig]))),
            ]
        ),
    )


def purchases(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    mer: Merchants,
    *,
    level: np.ndarray,
    unemployed: np.ndarray,
    active: np.ndarray,
    open_m: np.ndarray,
) -> Purchases:
    """Consumers' purchases, most from platform merchants chosen assortatively by risk."""
    p_rate = con.purchase_rate * cal.season[m] * active * np.where(unemployed, 0.7, 1.0)
    p_c = np.repeat(np.arange(len(active)), rng.poisson(p_rate))
    ticket = con.spend_share * level / con.purchase_rate
    p_amt = ticket[p_c] * np.exp(rng.normal(-0.18, 0.6, len(p_c)))
    p_ts = timestamps(rng, cal.sample_days(rng, m, len(p_c)))
    p_chan = channels(rng, len(p_c), SHOP_CHANNELS)
    # Assortative choice of merchant: position in the risk-ordered, size-weighted merchants.
    attract = mer.guest_rate * mer.mult[m] * open_m
    p_m = np.full(len(p_c), -1)
    if attract.sum() > 0:
        order = np.argsort(mer.risk, kind="stable")
        cw = np.cumsum(attract[order])
        cw /= cw[-1]
        x = np.abs(con.risk_q[p_c] + 0.2 * rng.standard_normal(len(p_c)))
        x = 1.0 - np.abs(1.0 - x)
        x = np.where(rng.random(len(p_c)) < 0.3, rng.random(len(p_c)), x)
        pick = order[np.minimum(np.searchsorted(cw, x, side="right"), len(attract) - 1)]
        linked = rng.random(len(p_c)) < 0.65
        p_m = np.where(linked, pick, -1)
    return Purchases(c=p_c, merchant=p_m, ts=p_ts, amount=p_amt, chan=p_chan)


def bills(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    *,
    unemployed: np.ndarray,
    active: np.ndarray,
) -> Payments:
    """Bills paid on their days (up to three per consumer); missed more often out of work."""
    lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
    c_parts, day_parts, amt_parts, slot_parts = [], [], [], []
    for j in range(3):  # three bill slots, not rows
        miss = con.bill_miss_p * np.where(unemployed, 3.0, 1.0)
        has = active & (con.bills[:, j] > 0) & (rng.random(len(active)) >= miss)
        idx = np.flatnonzero(has)
        c_parts.append(idx)
        day_parts.append(lo + np.minimum(con.bill_day[idx, j], hi - lo) - 1)
        amt_parts.append(con.bills[idx, j] * np.exp(rng.normal(0, 0.1, len(idx))))
        slot_parts.append(np.full(len(idx), j, dtype=np.int8))
    return Payments(
        c=np.concatenate(c_parts),
        day=np.concatenate(day_parts),
        amount=np.concatenate(amt_parts),
        slot=np.concatenate(slot_parts),
    )


def transfers(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    *,
    level: np.ndarray,
    active: np.ndarray,
) -> tuple[Transfers, Transfers]:
    """Transfers between active consumers, then transfers in from outside the world."""
    n_c = len(active)
    act_idx = np.flatnonzero(active)
    n_t = rng.poisson(con.transfer_rate * active) if len(act_idx) > 1 else np.zeros(n_c, int)
    t_c = np.repeat(np.arange(n_c), n_t)
    pos = rng.integers(0, max(1, len(act_idx)), len(t_c))
    to = act_idx[pos] if len(act_idx) else t_c
    to = np.where(to == t_c, act_idx[(pos + 1) % max(1, len(act_idx))], to)
    t_amt = level[t_c] * 0.08 * np.exp(rng.normal(0, 0.8, len(t_c)) + 0.2 * con.risk[t_c])
    t_ts = timestamps(rng, cal.sample_days(rng, m, len(t_c)))
    x_c = np.repeat(np.arange(n_c), rng.poisson(0.25 * np.exp(0.4 * con.risk) * active))
    x_amt = level[x_c] * 0.1 * np.exp(rng.normal(0, 0.8, len(x_c)))
    x_ts = timestamps(rng, cal.sample_days(rng, m, len(x_c)))
    between = Transfers(c=t_c, to=to, ts=t_ts, amount=t_amt)
    return between, Transfers(c=np.full(len(x_c), -1), to=x_c, ts=x_ts, amount=x_amt)


def consumer_events(
    rng: np.random.Generator,
    *,
    inc: Payments,
    pur: Purchases,
    bill: Payments,
    between: Transfers,
    inflow: Transfers,
    repaid: Payments,
) -> pl.DataFrame:
    """The month's consumer events, not yet in time order, with codes for kind and channel.

    Columns: consumer index ``c``, ``ts``, ``kind``, ``amount``, counterparty (``cp_m`` a
    merchant, ``cp_c`` a consumer, -1 none) and ``chan``.
    """
    t_c, to = between.c, between.to
    # Seven groups, in this order: income, purchases, bills, transfers out and in between
    # consumers, transfers in from outside, repayments. Timestamps are drawn before channels.
    kinds = (
        "income",
        "purchase",
        "bill_payment",
        "transfer_out",
        "transfer_in",
        "transfer_in",
        "repayment",
    )
    amounts = (
        inc.amount,
        pur.amount,
        bill.amount,
        between.amount,
        between.amount,
        inflow.amount,
        repaid.amount,
    )
    sizes = [len(a) for a in amounts]
    n_inc, n_p, n_b, n_t, _, n_x, n_r = sizes
    ts = np.concatenate(
        [
            timestamps(rng, inc.day),
            pur.ts,
            timestamps(rng, bill.day),
            between.ts,
            between.ts,
            inflow.ts,
            timestamps(rng, repaid.day),
        ]
    )
    kind = [np.full(n, CONSUMER_KIND[k]) for n, k in zip(sizes, kinds, strict=True)]
    return pl.DataFrame(
        {
            "c": np.concatenate([inc.c, pur.c, bill.c, t_c, to, inflow.to, repaid.c]),
            "ts": ts,
            "kind": np.concatenate(kind).astype(np.int8),
            "amount": np.maximum(np.round(np.concatenate(amounts), 2), 0.01),
            "cp_m": np.concatenate(
                [np.full(n_inc, -1), pur.merchant, np.full(n_b + 2 * n_t + n_x + n_r, -1)]
            ),
            "cp_c": np.concatenate(
                [np.full(n_inc + n_p + n_b, -1), to, t_c, np.full(n_x + n_r, -1)]
            ),
            "chan": np.concatenate(
                [
                    channels(rng, n_inc, MONEY_CHANNELS),
                    pur.chan,
                    channels(rng, n_b, MONEY_CHANNELS),
                    np.tile(channels(rng, n_t, MONEY_CHANNELS), 2),
                    channels(rng, n_x, MONEY_CHANNELS),
                    np.zeros(n_r, dtype=np.int8),
                ]
            ),
        }
    )


def with_balances(cons: pl.DataFrame, balance: np.ndarray) -> pl.DataFrame:
    """Running balances (``bal``) of the month's events in time order; updates ``balance``.

    ``balance`` holds each consumer's closing balance so far; a balance never goes below zero
    (an overdraft is a top-up first).
    """
    cons = cons.with_columns(
        signed=cons["amount"].to_numpy() * CONSUMER_SIGN[cons["kind"].to_numpy()],
        carry=balance[cons["c"].to_numpy()],
    )
    cons = (
        cons.with_row_index("seq")
        .sort(["c", "ts", "seq"])
        .with_columns((pl.col("signed").cum_sum().over("c") + pl.col("carry")).alias("run"))
        .with_columns(
            (pl.col("run") - pl.col("run").cum_min().over("c").clip(upper_bound=0.0)).alias("bal")
        )
    )
    last = cons.group_by("c").agg(pl.col("bal").last())
    balance[last["c"].to_numpy()] = last["bal"].to_numpy()
    return cons.sort(["ts", "seq"])


@dataclass(frozen=True)
class Sales:
    """A month's merchant sales: merchant, timestamp, amount, buyer (-1: a guest) and channel."""

    m: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    buyer: np.ndarray
    chan: np.ndarray


def sales(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    mer: Merchants,
    *,
    pur: Purchases,
    open_m: np.ndarray,
) -> Sales:
    """Merchants' sales: guest sales by their activity and the season, plus consumers' purchases."""
    g_rate = mer.guest_rate * mer.mult[m] * cal.season[m] * open_m
    g_m = np.repeat(np.arange(len(open_m)), rng.poisson(g_rate))
    g_amt = mer.ticket[g_m] * np.exp(rng.normal(-0.18, 0.6, len(g_m)))
    g_ts = timestamps(rng, cal.sample_days(rng, m, len(g_m)))
    lk = pur.merchant >= 0
    return Sales(
        m=np.concatenate([g_m, pur.merchant[lk]]),
        ts=np.concatenate([g_ts, pur.ts[lk]]),
        amount=np.maximum(np.round(np.concatenate([g_amt, pur.amount[lk]]), 2), 0.01),
        buyer=np.concatenate([np.full(len(g_m), -1), pur.c[lk]]),
        chan=np.concatenate([channels(rng, len(g_m), SHOP_CHANNELS), pur.chan[lk]]),
    )


def merchant_events(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    mer: Merchants,
    *,
    sale: Sales,
    end_day: int,
) -> tuple[pl.DataFrame, np.ndarray]:
    """The month's merchant events in time order, and each merchant's sales in the month.

    Sales, the refunds and chargebacks some of them draw, payouts twice a month (net of refunds)
    and the month's fee. The frame has merchant index ``mi``, ``ts``, ``kind`` code, ``amount``,
    ``buyer`` (-1 none) and ``chan``; events on or after ``end_day`` are not observed.
    """
    lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
    s_m, s_ts, s_amt = sale.m, sale.ts, sale.amount
    ns = len(s_m)
    rf = rng.random(ns) < mer.refund_p[s_m]
    rf_ts = s_ts[rf] + (rng.geometric(0.25, rf.sum()) * DAY_US + rng.integers(0, DAY_US, rf.sum()))
    rf_amt = np.where(rng.random(rf.sum()) < 0.8, 1.0, rng.uniform(0.2, 0.9, rf.sum()))
    rf_amt = np.maximum(np.round(s_amt[rf] * rf_amt, 2), 0.01)
    cb = rng.random(ns) < mer.chargeback_p[s_m]
    cb_ts = s_ts[cb] + rng.integers(10, 61, cb.sum()) * DAY_US
    n_m = len(mer.risk)
    total = np.bincount(s_m, weights=s_amt, minlength=n_m)
    refunds = np.bincount(s_m[rf], weights=rf_amt, minlength=n_m)
    st_mi, st_ts, st_kind, st_amt = _settlements(sale, total, refunds, lo=lo, hi=hi)
    kind = MERCHANT_KIND
    mt = pl.DataFrame(
        {
            "mi": np.concatenate([s_m, s_m[rf], s_m[cb], st_mi]),
            "ts": np.concatenate([s_ts, rf_ts, cb_ts, st_ts]),
            "kind": np.concatenate(
                [
                    np.full(ns, kind["sale"]),
                    np.full(rf.sum(), kind["refund"]),
                    np.full(cb.sum(), kind["chargeback"]),
                    st_kind,
                ]
            ).astype(np.int8),
            "amount": np.concatenate([s_amt, rf_amt, s_amt[cb], st_amt]),
            "buyer": np.concatenate(
                [sale.buyer, sale.buyer[rf], sale.buyer[cb], np.full(len(st_mi), -1)]
            ),
            "chan": np.concatenate(
                [sale.chan, sale.chan[rf], sale.chan[cb], np.zeros(len(st_mi), dtype=np.int8)]
            ),
        }
    )
    # Refunds and chargebacks of late sales may fall after the world's end: not observed.
    mt = mt.with_row_index("seq").filter(pl.col("ts") < end_day * DAY_US).sort(["ts", "seq"])
    return mt, total


def _settlements(
    sale: Sales, total: np.ndarray, refunds: np.ndarray, *, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Payouts and fees of the month, by merchant: index, timestamp, kind code, amount.

    The first half-month's sales less the 0.6% fee are paid out on the 16th, the rest less the
    month's refunds on the last day; the fee is booked on the last day too.
    """
    first_half = sale.ts < (lo + 15) * DAY_US
    half1 = np.bincount(sale.m[first_half], weights=sale.amount[first_half], minlength=len(total))
    half2 = total - half1
    po1 = np.flatnonzero(np.round(half1 * 0.994, 2) > 0)
    net2 = np.round(half2 * 0.994 - refunds, 2)
    po2 = np.flatnonzero(net2 > 0)
    fee = np.round(total * 0.006, 2)
    fe = np.flatnonzero(fee > 0)
    fee_ts = (hi - 1) * DAY_US + 20 * 3_600_000_000
    po1_ts = (lo + 15) * DAY_US + 2 * 3_600_000_000
    po2_ts = (hi - 1) * DAY_US + 21 * 3_600_000_000
    kind = MERCHANT_KIND
    return (
        np.concatenate([po1, po2, fe]),
        np.concatenate(
            [np.full(len(po1), po1_ts), np.full(len(po2), po2_ts), np.full(len(fe), fee_ts)]
        ),
        np.concatenate(
            [np.full(len(po1) + len(po2), kind["payout"]), np.full(len(fe), kind["fee"])]
        ),
        np.concatenate([np.round(half1[po1] * 0.994, 2), net2[po2], fee[fe]]),
    )
