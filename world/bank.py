"""A retail bank's current accounts: the statement its customers leave, one month at a time.

The bank flavour of the world (:mod:`world.bank_synth`) has consumers only, each holding a
current account, and its log is the account statement: salaries from the employer (irregular
earners get irregular pay from several payers), cash deposits and ATM withdrawals, standing
orders and direct debits for household bills and insurance, card purchases (a few refunded),
transfers in and out, the odd other credit or debit, loan disbursements and instalment debits,
and the bank's own postings at month end: the account fee (waived on a healthy balance),
interest on a positive balance and penalty interest on a negative one. The balance may go
negative; a direct debit that would take it past the arranged overdraft bounces and costs a
returned-payment charge. Every row carries the balance after it, in integer fen so the
statement adds up exactly.

Behaviour comes from the consumer's latent traits (:mod:`world.population`): each month the
consumer spends what habit says (``spend_share`` of income, which rises with risk) plus a share
of the gap between the balance and the buffer they aim to keep. The disciplined and the stable
keep a larger buffer and close the gap faster; the undisciplined and the unstable spend more of
it in cash, hold lower balance floors, run overdrafts longer and pay more penalties. Risk comes
from the same traits (:mod:`world.risk`), so the statement's new kinds carry signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from world.activity import CONSUMER_KIND, CONSUMER_SIGN, SHOP_CHANNELS, Payments, Transfers
from world.numeric import sigmoid
from world.population import Consumers
from world.seasons import DAY_US, Calendar, timestamps

#: The account's terms: a monthly fee of 10 yuan, waived when the month's mean balance is at
#: least 3000 yuan; 20 yuan per returned (bounced) direct debit; penalty interest of 0.05% a day
#: on a negative balance; 0.35% a year on a positive one.
ACCOUNT_FEE_FEN = 1_000
FEE_WAIVER_FEN = 300_000
RETURNED_PAYMENT_FEN = 2_000
OVERDRAFT_DAILY_RATE = 0.0005
CREDIT_YEARLY_RATE = 0.0035
#: Counterparties other than the bank's own customers: employers (about one per 25 customers),
#: gig and benefit payers, billers (landlords, lenders, utilities) and insurers.
PAYERS = 40
BILLERS = 300
INSURERS = 12
REFUND_SHARE = 0.03  # card purchases refunded, a few days later
CHANNEL_SHARE = 0.08  # card purchases whose channel the bank reports (the rest: unknown)
KIND = CONSUMER_KIND


@dataclass(frozen=True)
class Accounts:
    """The current accounts: counterparties, terms and the habits that drive each statement.

    ``parties`` are the counterparty ids: the bank's customers (in consumer order) first, then
    employers, payers, billers and insurers; the other fields index into it.
    """

    parties: pl.Series
    employer: np.ndarray  # party index of the consumer's employer
    payers: np.ndarray  # party indices of the gig and benefit payers
    biller: np.ndarray  # (consumers, 3) party index of each bill's payee
    insurer: np.ndarray  # party index, -1 without insurance
    premium: np.ndarray  # monthly insurance premium (yuan)
    premium_day: np.ndarray
    limit: np.ndarray  # arranged overdraft (fen); 0 without one
    buffer: np.ndarray  # the balance the consumer aims to keep, in months of income
    adjust: np.ndarray  # share of the gap to that buffer spent (or saved) in a month
    cash_share: np.ndarray  # share of spending taken out in cash
    card_rate: np.ndarray  # card purchases a month
    cash_rate: np.ndarray  # ATM withdrawals a month
    deposit_rate: np.ndarray  # cash deposits a month


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), 6))


def open_accounts(rng: np.random.Generator, con: Consumers) -> Accounts:
    """Every consumer's current account, its counterparties and the habits the traits drive."""
    n = len(con.risk)
    employers = max(1, n // 25)
    names = [con.ids.to_numpy()]
    offset = n
    ranges = []
    for prefix, k in (("EMP", employers), ("PAY", PAYERS), ("BIL", BILLERS), ("INS", INSURERS)):
        names.append(_ids(prefix, k))
        ranges.append(offset + np.arange(k))
        offset += k
    emp, payers, billers, insurers = ranges
    insured = rng.random(n) < sigmoid(-0.3 + 0.6 * con.discipline + 0.3 * con.stability)
    arranged = rng.random(n) < sigmoid(0.3 + 0.5 * con.stability)
    limit = np.round(con.income * rng.uniform(0.3, 1.0, n), -2) * 100
    cash_share = np.clip(
        sigmoid(-1.4 - 0.7 * con.discipline - 0.4 * con.stability + rng.normal(0, 0.5, n)),
        0.02,
        0.85,
    )
    return Accounts(
        parties=pl.Series("counterparty_id", np.concatenate(names)),
        employer=rng.choice(emp, n),
        payers=payers,
        biller=rng.choice(billers, (n, 3)),
        insurer=np.where(insured, rng.choice(insurers, n), -1),
        premium=np.exp(rng.normal(np.log(180.0), 0.5, n)),
        premium_day=rng.integers(1, 29, n),
        limit=np.where(arranged, limit, 0).astype(np.int64),
        buffer=0.8 * np.exp(rng.normal(0, 0.5, n) + 0.5 * con.discipline + 0.3 * con.stability),
        adjust=0.08 + 0.3 * sigmoid(1.2 * con.discipline + rng.normal(0, 0.5, n)),
        cash_share=cash_share,
        card_rate=2.0 * con.purchase_rate,
        cash_rate=0.3 + 3.0 * cash_share,
        deposit_rate=np.where(con.regular, 0.15, 1.2) * np.exp(rng.normal(0, 0.4, n)),
    )


@dataclass(frozen=True)
class Flows:
    """What the month brings into the statement from the rest of the world."""

    income: Payments  # salaries first (``salaried`` of them), then gig income
    salaried: int
    bills: Payments  # with their slot
    between: Transfers  # between the bank's customers
    inflow: Transfers  # from outside
    repaid: Payments  # loan instalments debited
    disbursed: Payments  # loans paid in


class _Events:
    """Event columns gathered group by group: consumer, timestamp, kind, fen, party, channel."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("c", "ts", "kind", "fen", "cp")}
        self.cols["chan"] = []

    def add(
        self,
        kind: str,
        c: np.ndarray,
        ts: np.ndarray,
        fen: np.ndarray,
        cp: np.ndarray | int = -1,
        chan: np.ndarray | int = -1,
    ) -> None:
        n = len(c)
        for key, value, dtype in (
            ("c", c, np.int64),
            ("ts", ts, np.int64),
            ("kind", np.full(n, KIND[kind]), np.int8),
            ("fen", np.maximum(fen, 1), np.int64),
            ("cp", np.broadcast_to(cp, n), np.int64),
            ("chan", np.broadcast_to(chan, n), np.int8),
        ):
            self.cols[key].append(np.asarray(value, dtype=dtype))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({k: np.concatenate(v) for k, v in self.cols.items()})


def _fen(yuan: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(yuan) * 100).astype(np.int64)


def _round_to(yuan: np.ndarray, step: float) -> np.ndarray:
    """Cash amounts: whole multiples of ``step`` yuan, at least one."""
    return np.maximum(np.round(yuan / step), 1) * step


def spending(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    acct: Accounts,
    *,
    level: np.ndarray,
    unemployed: np.ndarray,
    active: np.ndarray,
    balance: np.ndarray,
) -> np.ndarray:
    """The month's discretionary spending (yuan): habit plus a share of the gap to the buffer.

    Habit is ``spend_share`` of income, swinging from month to month with volatility and lower
    out of work; the gap is the opening balance less the buffer the consumer aims to keep.
    """
    swing = np.exp(rng.normal(0.0, 0.2 * np.exp(0.4 * con.volatility)))
    habit = con.spend_share * level * cal.season[m] * swing * np.where(unemployed, 0.8, 1.0)
    gap = balance / 100.0 - acct.buffer * level
    return np.clip(habit + acct.adjust * gap, 0.05 * level, 4.0 * level) * active


def month_statement(
    rng: np.random.Generator,
    cal: Calendar,
    m: int,
    con: Consumers,
    acct: Accounts,
    *,
    flows: Flows,
    spend: np.ndarray,
    active: np.ndarray,
    level: np.ndarray,
    balance: np.ndarray,
) -> pl.DataFrame:
    """The month's statement rows in time order, with balances; updates ``balance`` (fen).

    Columns: consumer index ``c``, ``ts``, ``kind`` code, ``amount`` and ``bal`` in fen, party
    ``cp`` (-1 none) and ``chan`` (-1 unknown).
    """
    lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
    n = len(active)
    ev = _Events()
    # Pay: salaries from the employer, gig pay from one of the payers.
    inc, k = flows.income, flows.salaried
    ev.add(
        "income",
        inc.c[:k],
        timestamps(rng, inc.day[:k]),
        _fen(inc.amount[:k]),
        acct.employer[inc.c[:k]],
    )
    gig = rng.choice(acct.payers, len(inc.c) - k)
    ev.add("income", inc.c[k:], timestamps(rng, inc.day[k:]), _fen(inc.amount[k:]), gig)

    # Spending: card purchases (a few refunded within the month), ATM withdrawals; cash paid in.
    cash = spend * acct.cash_share
    p_c = np.repeat(np.arange(n), rng.poisson(acct.card_rate * cal.season[m] * active))
    p_fen = _fen(
        (spend - cash)[p_c] / acct.card_rate[p_c] * np.exp(rng.normal(-0.18, 0.6, len(p_c)))
    )
    p_ts = timestamps(rng, cal.sample_days(rng, m, len(p_c)))
    shown = rng.random(len(p_c)) < CHANNEL_SHARE
    chan = np.where(shown, rng.choice(len(SHOP_CHANNELS), len(p_c), p=SHOP_CHANNELS), -1)
    ev.add("purchase", p_c, p_ts, p_fen, chan=chan)
    back = np.flatnonzero(rng.random(len(p_c)) < REFUND_SHARE)
    r_ts = p_ts[back] + rng.geometric(0.3, len(back)) * DAY_US
    keep = back[r_ts < hi * DAY_US]
    ev.add("refund", p_c[keep], r_ts[r_ts < hi * DAY_US], p_fen[keep], chan=chan[keep])

    w_c = np.repeat(np.arange(n), rng.poisson(acct.cash_rate * active))
    w_amt = cash[w_c] / acct.cash_rate[w_c] * np.exp(rng.normal(-0.1, 0.45, len(w_c)))
    ev.add(
        "cash_withdrawal",
        w_c,
        timestamps(rng, cal.sample_days(rng, m, len(w_c))),
        _fen(_round_to(w_amt, 100.0)),
    )
    d_c = np.repeat(np.arange(n), rng.poisson(acct.deposit_rate * active))
    d_amt = 0.1 * level[d_c] * np.exp(rng.normal(0.0, 0.6, len(d_c)))
    ev.add(
        "cash_deposit",
        d_c,
        timestamps(rng, cal.sample_days(rng, m, len(d_c))),
        _fen(_round_to(d_amt, 50.0)),
    )

    # Standing orders and direct debits: household bills and insurance premiums.
    bill = flows.bills
    b_cp = acct.biller[bill.c, bill.slot]
    ev.add("bill_payment", bill.c, timestamps(rng, bill.day), _fen(bill.amount), b_cp)
    ins = np.flatnonzero(active & (acct.insurer >= 0))
    ins_day = lo + np.minimum(acct.premium_day[ins], hi - lo) - 1
    ev.add(
        "bill_payment", ins, timestamps(rng, ins_day), _fen(acct.premium[ins]), acct.insurer[ins]
    )

    # Transfers (the customers are the first parties), odd credits and debits, the loans.
    t = flows.between
    t_fen = _fen(t.amount)
    ev.add("transfer_out", t.c, t.ts, t_fen, t.to)
    ev.add("transfer_in", t.to, t.ts, t_fen, t.c)
    ev.add("transfer_in", flows.inflow.to, flows.inflow.ts, _fen(flows.inflow.amount))
    for kind, rate, share in (("other_in", 0.06, 0.2), ("other_out", 0.08, 0.1)):
        o_c = np.repeat(np.arange(n), rng.poisson(rate * active))
        o_amt = share * level[o_c] * np.exp(rng.normal(0.0, 0.8, len(o_c)))
        ev.add(kind, o_c, timestamps(rng, cal.sample_days(rng, m, len(o_c))), _fen(o_amt))
    rep, dis = flows.repaid, flows.disbursed
    ev.add("repayment", rep.c, timestamps(rng, rep.day), _fen(rep.amount))
    ev.add("loan_disbursement", dis.c, timestamps(rng, dis.day), _fen(dis.amount))

    # The bank's side: bounced debits, then the month-end postings, then the balances.
    frame = ev.frame().with_row_index("seq")
    frame = _bounce(frame, acct, balance)
    frame = _month_end(frame, active, balance, lo=lo, hi=hi)
    frame = _run(frame, balance)
    last = frame.group_by("c").agg(pl.col("bal").last())
    balance[last["c"].to_numpy()] = last["bal"].to_numpy()
    return frame.sort(["ts", "seq"]).select(
        "c", "ts", "kind", pl.col("fen").alias("amount"), "cp", "chan", "bal"
    )


def _run(frame: pl.DataFrame, balance: np.ndarray) -> pl.DataFrame:
    """The events by consumer in time order with the running balance ``bal`` (fen)."""
    signed = frame["fen"].to_numpy() * CONSUMER_SIGN[frame["kind"].to_numpy()].astype(np.int64)
    return (
        frame.with_columns(signed=signed, carry=balance[frame["c"].to_numpy()])
        .sort(["c", "ts", "seq"])
        .with_columns(bal=pl.col("signed").cum_sum().over("c") + pl.col("carry"))
        .drop("signed", "carry")
    )


def _bounce(frame: pl.DataFrame, acct: Accounts, balance: np.ndarray) -> pl.DataFrame:
    """Direct debits that would take the balance past the arranged overdraft bounce.

    A bounced debit leaves the statement and a returned-payment charge (``penalty``) takes its
    place. The test is the balance with every earlier debit paid, in one pass: a debit is not
    rescued by an earlier one bouncing (a bank's cut-off runs before it knows).
    """
    ran = _run(frame, balance)
    limit = acct.limit[ran["c"].to_numpy()]
    bounced = pl.Series(
        (ran["kind"].to_numpy() == KIND["bill_payment"]) & (ran["bal"].to_numpy() < -limit)
    )
    charges = ran.filter(bounced).with_columns(
        kind=pl.lit(KIND["penalty"], dtype=pl.Int8),
        fen=pl.lit(RETURNED_PAYMENT_FEN, dtype=pl.Int64),
        cp=pl.lit(-1, dtype=pl.Int64),
        chan=pl.lit(-1, dtype=pl.Int8),
    )
    return pl.concat([ran.filter(~bounced), charges]).drop("bal")


def _month_end(
    frame: pl.DataFrame, active: np.ndarray, balance: np.ndarray, *, lo: int, hi: int
) -> pl.DataFrame:
    """The bank's postings on the month's last moment: fee, interest, penalty interest.

    Interest of either sign is on the time-weighted mean balance over the month: the opening
    balance until the first event, then each event's balance until the next.
    """
    n = len(active)
    ran = _run(frame, balance)
    lo_us, hi_us = lo * DAY_US, hi * DAY_US
    c = ran["c"].to_numpy()
    ts = ran["ts"].to_numpy()
    bal = ran["bal"].to_numpy().astype(np.float64)
    nxt = ran.select(pl.col("ts").shift(-1).over("c").fill_null(hi_us)).to_series().to_numpy()
    first = np.full(n, hi_us, dtype=np.int64)
    who, at = np.unique(c, return_index=True)
    first[who] = ts[at]
    opening = balance.astype(np.float64)
    span = float(hi_us - lo_us)
    pos = np.bincount(c, weights=np.maximum(bal, 0) * (nxt - ts), minlength=n)
    neg = np.bincount(c, weights=np.minimum(bal, 0) * (nxt - ts), minlength=n)
    pos = (pos + np.maximum(opening, 0) * (first - lo_us)) / span
    neg = (neg + np.minimum(opening, 0) * (first - lo_us)) / span
    days = hi - lo
    fee = active & (pos + neg < FEE_WAIVER_FEN)
    credit = np.floor(pos * CREDIT_YEARLY_RATE / 365.0 * days).astype(np.int64)
    charge = np.round(-neg * OVERDRAFT_DAILY_RATE * days).astype(np.int64)
    ev = _Events()
    for kind, due, fen in (
        ("fee", fee, np.full(n, ACCOUNT_FEE_FEN)),
        ("interest_credit", active & (credit >= 1), credit),
        ("penalty", active & (charge >= 1), charge),
    ):
        who = np.flatnonzero(due)
        ev.add(kind, who, np.full(len(who), hi_us - 1), fen[who])
    posted = ev.frame().with_row_index("seq", offset=frame.height + 1)
    return pl.concat([frame, posted.with_columns(pl.col("seq").cast(frame["seq"].dtype))])
