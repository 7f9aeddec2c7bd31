"""Consumer features: measures aggregated once, families declared over windows and blocks.

Every feature is declared in the catalog :func:`catalog` returns (its windowed families over
the configured windows); the expressions read the per-snapshot aggregate frame built by
:func:`aggregates`. :mod:`features.definitions` assembles these for :func:`features.build.build`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from fractions import Fraction

import numpy as np
import polars as pl

from features.blocks import (
    active_blocks,
    block_cv,
    block_min,
    block_shortfall,
    days_since,
    hhi,
    last_minus_mean,
    last_over_usual,
    safe_ratio,
)
from features.build import Inputs
from features.catalog import TRADING_AND_MONEY, Actionability, Catalog, CatalogBuilder
from features.contract.repayments import RepaymentRules
from features.contract.segments import CONSUMER
from features.contract.tables import CHANNELS
from features.history import (
    DEBT_STILL_OWED,
    declare_credit_history,
    declare_identity,
    delinquency_onset,
    per_snapshot,
)
from features.keys import (
    AS_OF,
    CODE,
    ENTITY,
    EPOCH,
    FEN,
    KEY,
    SECOND,
    Snapshots,
    code_of,
    day_number,
    day_of,
    fen,
    fixed,
    id_hash,
)
from features.orderstats import (
    DailySeries,
    Request,
    daily,
    day_groups,
    level_at,
)
from features.orderstats import read as read_order_stats
from features.partners import partner_measures, read_mix, read_partners
from features.timeline import ROWS, Timeline, read_sums, windows_of

SEGMENT = CONSUMER.name
PARTNER_WINDOWS: tuple[int, ...] = (30, 90, 365)

_kind = pl.col("kind")
_amount = pl.col("amount_fen")
_in = pl.col("direction") == "in"
_log = pl.col("log_amount_fx")
_balance = pl.col("balance_fen")
_key = pl.col(KEY)


def _when(condition: pl.Expr, value: pl.Expr | int = 1) -> pl.Expr:
    return pl.when(condition).then(value).otherwise(0)


# The day's closing balance is its last reported balance (events are in time order): a row
# closes its day when the next row reporting a balance is on another day.
# Evaluated once per event among the DERIVED columns (three measures read it).
_next_balance_key = pl.when(_balance.is_not_null()).then(_key).shift(-1).backward_fill()
_closes_day = pl.col("closes_day")

MEASURES: dict[str, pl.Expr] = {
    "txn_cnt": ROWS,
    "in_amt": _when(_in, _amount),
    "out_amt": _when(~_in, _amount),
    "income_amt": _when(_kind == "income", _amount),
    "income_cnt": _kind == "income",
    "purchase_amt": _when(_kind == "purchase", _amount),
    "purchase_cnt": _kind == "purchase",
    "purchase_log_fx": _when(_kind == "purchase", _log),
    "purchase_logsq_fx": _when(_kind == "purchase", (_log * _log) // 10_000),
    "bill_amt": _when(_kind == "bill_payment", _amount),
    "bill_cnt": _kind == "bill_payment",
    "transfer_out_amt": _when(_kind == "transfer_out", _amount),
    "repay_amt": _when(_kind == "repayment", _amount),
    "repay_cnt": _kind == "repayment",
    "penalty_cnt": _kind == "penalty",
    "fee_cnt": _kind == "fee",
    "cash_out_amt": _when(_kind == "cash_withdrawal", _amount),
    "night_cnt": pl.col("hour") < 6,
    **{f"ch_{c}_cnt": (pl.col("channel") == c).fill_null(False) for c in CHANNELS},
    # day-level measures, on the day's first row or on the row that closes it
    "active_day": (_key != _key.shift(1)).fill_null(True),
    "bal_days": _closes_day,
    "bal_sum_amt": _when(_closes_day, _balance),
}


# A day is a low-balance day when it closes below a share of the consumer's own average monthly
# outflow over the OUTFLOW_DAYS up to that day (a negative balance always is): relative to the
# entity's flows, so it means the same in any currency and at any scale.
OUTFLOW_DAYS = 90


def _low_balance_days(events: pl.DataFrame, share: float) -> pl.Series:
    """1 on each row that closes a day below ``share`` of the month's typical outflow, else 0.

    The typical monthly outflow at a day is the entity's money out over the ``OUTFLOW_DAYS``
    days ending with that day, up to the row that closes it (the day's last reported balance),
    per 30 days: a prefix sum of the sorted log read at the closing row and at one
    binary-searched start for each closing row. Only events up to the closing row are read, so
    the flag is point-in-time like every measure.
    """
    closes = events["closes_day"].to_numpy()
    at = np.flatnonzero(closes)
    flags = np.zeros(events.height, dtype=np.int64)
    if at.size == 0:
        return pl.Series("low_bal_days", flags)
    key = events[KEY].to_numpy()
    out = events.select(_when(~_in, _amount)).to_series().to_numpy()
    spent = np.concatenate(([0], np.cumsum(out)))
    # Keys are entity << DAY_BITS | day, and days count from 1900: key - (OUTFLOW_DAYS - 1) is
    # the first day of the span, in the same entity.
    first = np.searchsorted(key, key[at] - (OUTFLOW_DAYS - 1), side="left")
    monthly = (spent[at + 1] - spent[first]) * (30 / OUTFLOW_DAYS)
    balance = events["balance_fen"].to_numpy()[at]
    flags[at] = balance < share * monthly
    return pl.Series("low_bal_days", flags)


LAST_DAYS: dict[str, pl.Expr] = {
    "last_txn_cnt_day": _key.is_not_null(),
    "last_income_cnt_day": _kind == "income",
}
GAPS: dict[str, pl.Expr] = {
    "income_gap_cnt": pl.col("__gap").is_not_null(),
    "income_gap_sum": pl.col("__gap").fill_null(0),
    "income_gap_sq": (pl.col("__gap") * pl.col("__gap")).fill_null(0),
}


def narrow(events: pl.LazyFrame) -> pl.LazyFrame:
    """The columns of the consumer log the measures read, as compact numbers.

    ``kind``, ``direction`` and ``channel`` become categoricals, ``counterparty_id`` its
    64-bit hash; amounts and balances are held in integer fen.
    """
    return events.select(
        ENTITY,
        "ts",
        pl.col("kind").cast(pl.Categorical),
        pl.col("direction").cast(pl.Categorical),
        fen(pl.col("amount")).alias("amount_fen"),
        id_hash("counterparty_id").alias("counterparty_id"),
        pl.col("channel").cast(pl.Categorical),
        fen(pl.col("balance_after")).alias("balance_fen"),
    )


# Computed once per event after the sort (fewer columns to move), read by several measures.
DERIVED: dict[str, pl.Expr] = {
    "log_amount_fx": fixed((pl.col("amount_fen") / FEN).clip(lower_bound=0).log1p()),
    "hour": pl.col(SECOND) // 3600,
    "closes_day": _balance.is_not_null() & (_next_balance_key != _key).fill_null(True),
}


def _income_days(events: pl.DataFrame) -> pl.DataFrame:
    """Income days, each with the days since the entity's previous income day (``__gap``)."""
    days = (
        events.lazy()
        .filter(_kind == "income")
        .select(KEY)
        .filter((_key != _key.shift(1)).fill_null(True))
    )
    same = code_of(_key) == code_of(_key).shift(1)
    return days.with_columns(pl.when(same).then(_key - _key.shift(1)).alias("__gap")).collect()


def aggregates(
    snaps: Snapshots,
    events: pl.DataFrame,
    inputs: Inputs,
    wanted: set[str],
    *,
    rules: RepaymentRules,
    low_balance_share: float,
) -> pl.LazyFrame:
    """The per-snapshot columns the consumer catalog's expressions read.

    ``low_balance_share``: a day closing below this share of the consumer's average monthly
    outflow (over the 90 days up to it) is a low-balance day (see :func:`_low_balance_days`).

    ``events`` is the encoded log of the snapshots' entities (:func:`narrow`, then
    :func:`features.keys.encode_events`).
    """
    windows = windows_of(wanted)

    def activity() -> dict[str, pl.Series]:
        flagged = events.with_columns(_low_balance_days(events, low_balance_share))
        timeline = Timeline(flagged, {**MEASURES, "low_bal_days": pl.col("low_bal_days")})
        columns = read_sums(timeline, snaps, wanted, windows=windows)
        columns.update(
            timeline.read(
                snaps, last_days=LAST_DAYS, levels={"closing_fen": _balance}, first_day=True
            )
        )
        gaps = Timeline(_income_days(events), GAPS)
        columns.update(read_sums(gaps, snaps, wanted, windows=windows))
        return columns

    def counterparties() -> dict[str, pl.Series]:
        onset = delinquency_onset(inputs.loans, inputs.repayments, rules)
        main, bad = partner_measures(
            events.lazy(), "counterparty_id", windows=PARTNER_WINDOWS, onset=onset, prefix="cp"
        )
        return read_partners(
            main,
            bad,
            snaps,
            wanted,
            prefix="cp",
            windows=windows,
            partner_windows=PARTNER_WINDOWS,
        )

    def categories() -> dict[str, pl.Series]:
        if inputs.partners is None:
            missing = pl.repeat(None, snaps.height, dtype=pl.Float64, eager=True)
            return {f"cat_{m}_ever": missing for m in ("new", "sq", "n")}
        table = inputs.partners.select(
            id_hash("partner_id").alias("__hash"), id_hash("category").alias("__category")
        ).collect()
        category = pl.col("counterparty_id").replace_strict(
            table["__hash"], table["__category"], default=None
        )
        purchases = (
            events.lazy().filter(_kind == "purchase").select(KEY, category.alias("category"))
        )
        return read_mix(purchases, "category", snaps, wanted, prefix="cat", windows=windows)

    def cash_flow() -> dict[str, pl.Series]:
        return cash_flow_reads(snaps, events, wanted)

    tasks = [activity, counterparties, categories, cash_flow]
    return per_snapshot(snaps, tasks, inputs, CONSUMER, rules)


# --- cash flow: windowed order statistics of the daily series (features.orderstats) --------

# Windows of the balance's order statistics and negative-balance days.
BALANCE_WINDOWS: tuple[int, ...] = (30, 90, 180, 365)
EVENT_WINDOWS: tuple[int, ...] = (90, 365)  # penalties, fees, cash share, largest outflow
MONTH_ENDS = 6  # month-end balances read for the level and its trend
SALARY_MONTHS: tuple[int, ...] = (3, 6)
# A payer is salary-like when its first payment of each month falls within this many days of
# the month (largest day of month minus smallest, over the months read). A payment that moves
# across a month's end (the 31st, then the 1st) is not seen as regular.
SALARY_DAY_SPREAD = 6
# Money in that is not pay, whatever its regularity: the bank's own interest, a lender's
# disbursement, a merchant's refund.
_NOT_PAY = ("interest_credit", "loan_disbursement", "refund")
_QUANTILES = {"p10": Fraction(1, 10), "p50": Fraction(1, 2)}


def _balance_series(events: pl.DataFrame) -> DailySeries:
    """Each day's closing balance (its last reported balance), carried to the next one."""
    closing = events.select(KEY, "balance_fen", "closes_day").filter(pl.col("closes_day"))
    return DailySeries(
        closing[KEY].to_numpy().astype(np.int64),
        closing["balance_fen"].to_numpy().astype(np.int64),
        step=True,
    )


def _flow_series(events: pl.DataFrame) -> tuple[DailySeries, DailySeries]:
    """Each event day's net flow and largest single outflow (point series on the same days).

    Days without events are not written (they read 0 through the ``min0`` statistic).
    """
    key = events[KEY].to_numpy().astype(np.int64)
    amounts = events.select(
        pl.when(_in).then(_amount).otherwise(-_amount).fill_null(0).alias("net"),
        _when(~_in, _amount).fill_null(0).alias("out"),
    )
    starts = day_groups(key)  # the log is sorted by key: one run per entity-day
    days, net = daily(key, amounts["net"].to_numpy().astype(np.int64), np.add, starts)
    _, out_max = daily(key, amounts["out"].to_numpy().astype(np.int64), np.maximum, starts)
    return DailySeries(days, net, step=False), DailySeries(days, out_max, step=False)


def _month_end_days(snaps: Snapshots) -> dict[str, pl.Series]:
    """Day numbers of the last ``MONTH_ENDS`` calendar month-ends before each as_of."""
    start = pl.col(AS_OF).dt.month_start()
    frame = snaps.frame.select(
        day_number(start.dt.offset_by(f"-{k}mo") - pl.duration(days=1)).alias(f"eom_bal_m{k}")
        for k in range(MONTH_ENDS)
    )
    return {c: frame[c] for c in frame.columns}


def _salary_payers(snaps: Snapshots, events: pl.DataFrame) -> dict[str, pl.Series]:
    """Per snapshot, payers who paid in every one of the last n complete calendar months.

    For each (entity, payer, month) the day of month of the payer's first payment; a payer
    counts for a snapshot when it paid in each of the ``n`` calendar months before as_of's
    month (all of them wholly before as_of) on days of month within ``SALARY_DAY_SPREAD``.
    The payments are aggregated once per month, so snapshots only join a small table.
    """
    date = ((day_of(_key) - EPOCH).cast(pl.Int32)).cast(pl.Date)
    pair = ["__c", "__cp"]
    c, cp, month, dom = (pl.col(n) for n in ("__c", "__cp", "__month", "__dom"))
    # rows sorted by (entity, payer, month): a row follows its payer's previous month when the
    # row before it is the same pair one month earlier (shifts, not per-group windows: there
    # are about as many pairs as rows)
    follows = ((c == c.shift(1)) & (cp == cp.shift(1)) & (month == month.shift(1) + 1)).fill_null(
        False
    )

    def regular(n: int) -> pl.Expr:
        run = pl.all_horizontal(follows.shift(i).fill_null(False) for i in range(n - 1))
        doms = [dom.shift(i) for i in range(n)]
        spread = pl.max_horizontal(doms) - pl.min_horizontal(doms)
        return (run & (spread <= SALARY_DAY_SPREAD)).alias(f"salary_payers_{n}m")

    months = (
        events.lazy()
        .filter(_in & pl.col("counterparty_id").is_not_null() & ~_kind.is_in(_NOT_PAY))
        .select(
            code_of(_key).alias("__c"),
            pl.col("counterparty_id").alias("__cp"),
            (date.dt.year().cast(pl.Int64) * 12 + date.dt.month() - 1).alias("__month"),
            date.dt.day().alias("__dom"),
        )
        .group_by(*pair, "__month")
        .agg(dom.min())
        .sort(*pair, "__month")
        .select("__c", "__month", *(regular(n) for n in SALARY_MONTHS))
        .group_by("__c", "__month")
        .agg(pl.col(f"salary_payers_{n}m").sum() for n in SALARY_MONTHS)
    )
    last = pl.col(AS_OF).dt.year().cast(pl.Int64) * 12 + pl.col(AS_OF).dt.month() - 2
    found = (
        snaps.frame.lazy()
        .select(pl.col(CODE).cast(pl.Int64).alias("__c"), last.alias("__month"))
        .join(months, on=["__c", "__month"], how="left", maintain_order="left")
        .select(pl.col(f"salary_payers_{n}m").fill_null(0) for n in SALARY_MONTHS)
        .collect()
    )
    return {c: found[c] for c in found.columns}


def cash_flow_reads(
    snaps: Snapshots, events: pl.DataFrame, wanted: set[str]
) -> dict[str, pl.Series]:
    """The cash-flow columns ``wanted`` names, read from the daily series of the log.

    - ``bal_{min,max,p10,p50}_{w}d``: order statistics of the closing balance over the ``w``
      days before as_of, each day weighted once (quantiles by the days a balance was in force);
    - ``neg_bal_days_{w}d``: days in the window whose closing balance was below zero;
    - ``flow_day_min_{w}d``: the lowest daily net flow (0 on days without events);
    - ``out_max_amt_{w}d``: the largest single outflow;
    - ``eom_bal_m{k}``: the balance in force at the k-th calendar month-end before as_of;
    - ``salary_payers_{n}m``: salary-like payers (:func:`_salary_payers`).

    Null where the window holds no balance (or no event for flows).
    """
    balance_stats: dict[str, tuple[int, object]] = {}
    for w in BALANCE_WINDOWS:
        balance_stats[f"bal_min_{w}d"] = (w, "min")
        balance_stats[f"bal_max_{w}d"] = (w, "max")
        for label, q in _QUANTILES.items():
            balance_stats[f"bal_{label}_{w}d"] = (w, q)
        balance_stats[f"neg_bal_days_{w}d"] = (w, ("below", 0))
    flow_stats = {f"flow_day_min_{w}d": (w, "min0") for w in EVENT_WINDOWS}
    out_stats = {f"out_max_amt_{w}d": (w, "max") for w in EVENT_WINDOWS}
    month_ends = [f"eom_bal_m{k}" for k in range(MONTH_ENDS)]
    salary = [f"salary_payers_{n}m" for n in SALARY_MONTHS]

    def chosen(stats: dict[str, tuple[int, object]]) -> dict[str, tuple[int, object]]:
        return {name: stat for name, stat in stats.items() if name in wanted}

    columns: dict[str, pl.Series] = {}
    balance_wanted = chosen(balance_stats)
    if balance_wanted or wanted.intersection(month_ends):
        balance = _balance_series(events)
        if balance_wanted:
            columns.update(read_order_stats(snaps, Request(balance, balance_wanted, FEN)))
        for name, days in _month_end_days(snaps).items():
            if name in wanted:
                columns[name] = level_at(balance, snaps, days) / FEN
    flow_wanted, out_wanted = chosen(flow_stats), chosen(out_stats)
    if flow_wanted or out_wanted:
        flow, outflow = _flow_series(events)
        if flow_wanted:
            columns.update(read_order_stats(snaps, Request(flow, flow_wanted, FEN)))
        if out_wanted:
            columns.update(read_order_stats(snaps, Request(outflow, out_wanted, FEN)))
    if wanted.intersection(salary):
        columns.update(_salary_payers(snaps, events))
    return {name: series.alias(name) for name, series in columns.items()}


def _known_slope(columns: Sequence[str]) -> pl.Expr:
    """Least-squares slope per step of the known values among ``columns`` (oldest first).

    Null with fewer than three known values; unknown ones (before the first balance) are
    left out rather than read as zero.
    """
    ts = list(range(len(columns)))
    known = [pl.col(c).is_not_null().cast(pl.Float64) for c in columns]
    ys = [pl.col(c).fill_null(0) for c in columns]
    n = pl.sum_horizontal(known)
    t_mean = pl.sum_horizontal([k * t for k, t in zip(known, ts, strict=True)]) / n
    y_mean = pl.sum_horizontal(ys) / n
    cov = pl.sum_horizontal(
        [k * (t - t_mean) * (y - y_mean) for k, t, y in zip(known, ts, ys, strict=True)]
    )
    var = pl.sum_horizontal([k * (t - t_mean) ** 2 for k, t in zip(known, ts, strict=True)])
    return pl.when(n >= 3).then(cov / var)


def policy_inputs() -> list[pl.Expr]:
    """Cash-flow and delinquency inputs of the limit engine (not model features)."""
    return [
        (pl.col("income_amt_90d") / 3).alias("monthly_inflow"),
        ((pl.col("in_amt_90d") - pl.col("out_amt_90d")) / 3)
        .clip(lower_bound=0)
        .alias("monthly_free_cash_flow"),
        pl.col("current_dpd"),
    ]


# --- the catalog ---------------------------------------------------------------------------

ATP, BEH, CON = "ability_to_pay", "behaviour", "connections"

# What a consumer controls (recourse suggests only these): how money comes, stays and goes
# (balances, spending, bills, penalties) but not who the consumer is, whom it deals with, or
# the repayment record already made, except debt it can still pay: arrears, open loans, what
# is outstanding.
ACTIONABLE = Actionability(
    dimensions=TRADING_AND_MONEY,
    features={
        **DEBT_STILL_OWED,
        # counts over the consumer's whole history: past events, not something to change now
        "spending_categories_ever": False,
        "category_hhi_ever": False,
    },
)


def _col(name: str) -> pl.Expr:
    return pl.col(name)


def _income_gap_mean(w: int) -> pl.Expr:
    return safe_ratio(_col(f"income_gap_sum_{w}d"), _col(f"income_gap_cnt_{w}d"))


def _gap_std(w: int) -> pl.Expr:
    n = _col(f"income_gap_cnt_{w}d")
    mean = _col(f"income_gap_sum_{w}d") / n
    var = (_col(f"income_gap_sq_{w}d") / n - mean * mean) * n / (n - 1)
    return pl.when(n > 1).then(var.clip(lower_bound=0).sqrt())


def _log_std(w: int) -> pl.Expr:
    n = _col(f"purchase_cnt_{w}d")
    mean = _col(f"purchase_log_fx_{w}d") / n
    var = (_col(f"purchase_logsq_fx_{w}d") / n - mean * mean) * n / (n - 1)
    return pl.when(n > 1).then(var.clip(lower_bound=0).sqrt())


def _declare_cash_flow(b: CatalogBuilder) -> None:
    """The cash-flow families of a bank statement: balance floors, penalties, regular pay.

    Each direction is stated with its reason beside the declaration (a ``# +1:`` comment).
    """
    # +1: the floor of the daily closing balance is the buffer left in the worst days: the
    # lower it is, the nearer the account came to missing a payment.
    b.per_window(
        BALANCE_WINDOWS, "balance_min_{w}d", lambda w: _col(f"bal_min_{w}d"),
        dimension=ATP, monotone=1, family="balance floor",
        description="Lowest daily closing balance (carried over days without events) in the "
        "{w} days before as_of; null when no balance was known in the window.",
        reason="balance fell very low in the last {w} days",
    )  # fmt: skip
    # +1: the same buffer, robust to a single bad day: the balance the account stayed above on
    # nine days in ten.
    b.per_window(
        BALANCE_WINDOWS, "balance_p10_{w}d", lambda w: _col(f"bal_p10_{w}d"),
        dimension=ATP, monotone=1, family="balance floor",
        description="10th percentile of the daily closing balance in the {w} days before "
        "as_of, each balance weighted by the days it was in force (a balance shown on the "
        "statement, never interpolated).",
        reason="balance often low in the last {w} days",
    )  # fmt: skip
    # +1: the typical day's balance: more money on an ordinary day is more capacity to pay.
    b.per_window(
        BALANCE_WINDOWS, "balance_median_{w}d", lambda w: _col(f"bal_p50_{w}d"),
        dimension=ATP, monotone=1, family="balance level",
        description="Median daily closing balance in the {w} days before as_of, each balance "
        "weighted by the days it was in force.",
        reason="low typical balance over the last {w} days",
    )  # fmt: skip
    # 0: a peak can be a loan disbursement or a salary passing through on its way out; a high
    # peak is not evidence of lower risk by itself, so the model is left free.
    b.per_window(
        BALANCE_WINDOWS, "balance_max_{w}d", lambda w: _col(f"bal_max_{w}d"),
        dimension=ATP, monotone=0, family="balance level",
        description="Highest daily closing balance in the {w} days before as_of.",
        reason="peak balance in the last {w} days",
    )  # fmt: skip
    # -1: every day overdrawn is a day in arrears with the bank, the most direct sign of
    # distress a statement shows.
    b.per_window(
        BALANCE_WINDOWS, "negative_balance_days_{w}d", lambda w: _col(f"neg_bal_days_{w}d"),
        dimension=ATP, monotone=-1, family="negative balance",
        description="Days in the {w} days before as_of whose closing balance (carried over days "
        "without events) was below zero; null when no balance was known in the window.",
        reason="account overdrawn on several days in the last {w} days",
    )  # fmt: skip
    # -1: penalty interest, late and returned-payment charges are missed obligations.
    b.per_window(
        EVENT_WINDOWS, "penalty_count_{w}d", lambda w: _col(f"penalty_cnt_{w}d"),
        dimension=BEH, monotone=-1, family="penalty events",
        description="Penalty charges (overdraft or penalty interest, late and returned-payment "
        "charges) in the {w} days before as_of.",
        reason="penalty or returned-payment charges in the last {w} days",
    )  # fmt: skip
    # 0: account, card and statement fees are what the account costs, not a sign of distress.
    b.per_window(
        EVENT_WINDOWS, "fee_count_{w}d", lambda w: _col(f"fee_cnt_{w}d"),
        dimension=BEH, monotone=0, family="fee events",
        description="Account, card and statement fees charged in the {w} days before as_of.",
        reason="fees charged in the last {w} days",
    )  # fmt: skip
    # 0: cash use is common among thin-file, rural and older customers; constraining it would
    # turn a habit that proxies for who a person is into a penalty, so the model is left free.
    # not actionable either, for the same reason: recourse must not ask people to stop being
    # who they are.
    b.per_window(
        EVENT_WINDOWS, "cash_share_{w}d",
        lambda w: safe_ratio(_col(f"cash_out_amt_{w}d"), _col(f"out_amt_{w}d")),
        dimension=BEH, monotone=0, family="ratio", actionable=False,
        description="Cash withdrawals over all money out in the {w} days before as_of.",
        reason="much of the spending is in cash",
    )  # fmt: skip
    # -1: one payment worth months of inflow drains the buffer the loan would be repaid from.
    b.per_window(
        EVENT_WINDOWS, "largest_outflow_to_monthly_inflow_{w}d",
        lambda w: safe_ratio(_col(f"out_max_amt_{w}d"), _col(f"in_amt_{w}d") * 30 / w),
        dimension=ATP, monotone=-1, family="ratio",
        description="Largest single outflow in the {w} days before as_of over the average "
        "30-day inflow of the same days.",
        reason="one payment took much of a month's inflow",
    )  # fmt: skip
    # 0: a large net outflow day is as often a planned transfer to savings as distress, and
    # its size scales with income; left free.
    b.per_window(
        EVENT_WINDOWS, "worst_day_net_flow_{w}d", lambda w: _col(f"flow_day_min_{w}d"),
        dimension=ATP, monotone=0, family="daily flow floor",
        description="Lowest daily net flow (money in minus money out, 0 on days without "
        "events) in the {w} days before as_of.",
        reason="a day with a large net outflow",
    )  # fmt: skip
    month_ends = [f"eom_bal_m{k}" for k in reversed(range(MONTH_ENDS))]  # oldest first
    # +1: a salary-like payer paid in every one of the last n months; regular pay is the
    # income a repayment plan can rest on.
    for n in SALARY_MONTHS:
        b.declare(
            f"salary_payers_{n}m", _col(f"salary_payers_{n}m"),
            dimension=ATP, monotone=1, family="regular income", window_days=31 * (n + 1),
            description=f"Payers who paid in during each of the {n} complete calendar months "
            f"before as_of's month, on days of the month at most {SALARY_DAY_SPREAD} apart "
            "(salary-like; interest, loan disbursements and refunds do not count).",
            reason="no regular salary-like income",
        )  # fmt: skip
    single = [
        # +1: the balance carried into the new month is what the next instalment meets.
        ("month_end_balance", _col("eom_bal_m0"), ATP, 1, 31, "balance level",
         "Balance in force at the last calendar month-end before as_of (null if none known).",
         "low balance at the end of last month"),
        # +1: a balance growing month after month is saving; a falling one is running down.
        ("month_end_balance_slope_6m", _known_slope(month_ends), ATP, 1, 31 * MONTH_ENDS,
         "trend",
         f"Least-squares slope per month of the balance at the last {MONTH_ENDS} calendar "
         "month-ends before as_of (the known ones, at least three).",
         "balance falling month after month"),
        # -1: a month spending more than came in eats savings or debt.
        ("net_outflow_months_12m",
         pl.sum_horizontal(
             (_col(f"out_amt_b{k}") > _col(f"in_amt_b{k}")).cast(pl.Int32) for k in range(12)
         ), ATP, -1, 360, "active months",
         "Number of the last twelve 30-day blocks in which money out exceeded money in.",
         "spent more than came in during several months"),
        # -1: inflow that swings from month to month makes instalments hard to meet.
        ("inflow_cv_12m", block_cv("in_amt"), ATP, -1, 360, "volatility",
         "Coefficient of variation of money in over the last twelve 30-day blocks.",
         "money coming in varies a lot from month to month"),
        # +1: money arriving in more months is steadier capacity to pay.
        ("inflow_months_12m", active_blocks("in_amt"), ATP, 1, 360, "active months",
         "Number of the last twelve 30-day blocks in which any money came in.",
         "money did not come in every month"),
    ]  # fmt: skip
    for name, expr, dim, monotone, window, family, description, reason in single:
        b.declare(
            name, expr, dimension=dim, monotone=monotone, description=description,
            reason=reason, window_days=window, family=family,
        )  # fmt: skip


def catalog(windows: Sequence[int], rules: RepaymentRules, low_balance_share: float) -> Catalog:
    """The consumer catalog; ``windows`` are the windows of the windowed families.

    ``rules`` say what late and default mean for the credit-history features; a day closing
    below ``low_balance_share`` of the consumer's average monthly outflow is a low-balance day.
    """
    b = CatalogBuilder(
        SEGMENT,
        basis=(("repayment_rules", asdict(rules)), ("low_balance_share", low_balance_share)),
        actionable=ACTIONABLE,
    )
    b.per_window(
        (30, 90, 180, 365), "income_{w}d", lambda w: _col(f"income_amt_{w}d"),
        dimension=ATP, monotone=1, family="windowed sum",
        description="Income received in the {w} days before as_of.",
        reason="low income over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "inflow_{w}d", lambda w: _col(f"in_amt_{w}d"),
        dimension=ATP, monotone=1, family="windowed sum",
        description="Money in (income and transfers) in the {w} days before as_of.",
        reason="little money coming in over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "net_flow_{w}d", lambda w: _col(f"in_amt_{w}d") - _col(f"out_amt_{w}d"),
        dimension=ATP, monotone=1, family="windowed sum",
        description="Money in minus money out in the {w} days before as_of.",
        reason="spending more than coming in over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "outflow_to_inflow_{w}d",
        lambda w: safe_ratio(_col(f"out_amt_{w}d"), _col(f"in_amt_{w}d")),
        dimension=ATP, monotone=-1, family="ratio",
        description="Money out over money in during the {w} days before as_of.",
        reason="spending is high relative to money coming in",
    )  # fmt: skip
    b.per_window(
        (90, 365), "repayment_to_income_{w}d",
        lambda w: safe_ratio(_col(f"repay_amt_{w}d"), _col(f"income_amt_{w}d")),
        dimension=ATP, monotone=-1, family="ratio",
        description="Loan repayments over income in the {w} days before as_of (debt service).",
        reason="a large share of income goes to repaying debt",
    )  # fmt: skip
    b.per_window(
        (30, 90), "mean_balance_{w}d",
        lambda w: safe_ratio(_col(f"bal_sum_amt_{w}d"), _col(f"bal_days_{w}d")),
        dimension=ATP, monotone=1, family="windowed mean",
        description="Mean closing balance over days with a reported balance in the {w} "
        "days before as_of.",
        reason="low account balance over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90), "low_balance_days_{w}d", lambda w: _col(f"low_bal_days_{w}d"),
        dimension=ATP, monotone=-1, family="windowed count",
        description=f"Days closing with a balance below {low_balance_share:.0%} of the average "
        f"monthly outflow of the {OUTFLOW_DAYS} days up to the day (or below zero) in the {{w}} "
        "days before as_of.",
        reason="often nearly out of money",
    )  # fmt: skip
    b.per_window(
        windows, "txn_count_{w}d", lambda w: _col(f"txn_cnt_{w}d"),
        dimension=BEH, monotone=0, family="windowed count",
        description="Transactions of any kind in the {w} days before as_of.",
        reason="account activity in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "purchase_amount_{w}d", lambda w: _col(f"purchase_amt_{w}d"),
        dimension=BEH, monotone=0, family="windowed sum",
        description="Purchases in the {w} days before as_of.",
        reason="purchase activity in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90), "purchase_count_{w}d", lambda w: _col(f"purchase_cnt_{w}d"),
        dimension=BEH, monotone=0, family="windowed count",
        description="Purchases in the {w} days before as_of.",
        reason="number of purchases in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (90, 365), "avg_purchase_{w}d",
        lambda w: safe_ratio(_col(f"purchase_amt_{w}d"), _col(f"purchase_cnt_{w}d")),
        dimension=BEH, monotone=0, family="windowed mean",
        description="Mean purchase amount in the {w} days before as_of.",
        reason="typical purchase size",
    )  # fmt: skip
    b.per_window(
        (90, 365), "bill_payments_{w}d", lambda w: _col(f"bill_cnt_{w}d"),
        dimension=BEH, monotone=1, family="windowed count",
        description="Bill payments made in the {w} days before as_of.",
        reason="few bills paid in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (7, 30, 90, 365), "active_days_{w}d", lambda w: _col(f"active_day_{w}d"),
        dimension=BEH, monotone=1, family="active days",
        description="Days with any transaction in the {w} days before as_of.",
        reason="few active days in the last {w} days",
    )  # fmt: skip
    b.per_window(
        PARTNER_WINDOWS, "distinct_counterparties_{w}d", lambda w: _col(f"cp_d{w}_ever"),
        dimension=CON, monotone=0, family="network size",
        description="Distinct counterparties (merchants and people) in the {w} days before as_of.",
        reason="size of the recent payment network",
    )  # fmt: skip
    b.per_window(
        (90, 365), "repeat_counterparty_share_{w}d",
        lambda w: safe_ratio(_col(f"cp_repeat_{w}d"), _col(f"cp_n_{w}d")),
        dimension=CON, monotone=1, family="repeat rate",
        description="Share of transactions with a counterparty in the {w} days before as_of "
        "where the counterparty was seen on an earlier day.",
        reason="few stable counterparties",
    )  # fmt: skip
    b.per_window(
        (90, 365), "risky_counterparty_share_{w}d",
        lambda w: safe_ratio(_col(f"cp_risky_{w}d"), _col(f"cp_n_{w}d")),
        dimension=CON, monotone=-1, family="counterparty quality",
        description="Share of transactions with a counterparty in the {w} days before as_of "
        "whose counterparty was already 30+ days past due on a loan.",
        reason="transacts with delinquent borrowers",
    )  # fmt: skip
    single = [
        (
            "income_months_6m",
            active_blocks("income_amt", 6),
            ATP,
            1,
            180,
            "Number of the last six 30-day blocks in which any income arrived.",
            "income did not arrive regularly",
            "active months",
        ),
        (
            "income_months_12m",
            active_blocks("income_amt"),
            ATP,
            1,
            360,
            "Number of the last twelve 30-day blocks in which any income arrived.",
            "income missing in several months of the last year",
            "active months",
        ),
        (
            "income_cv_12m",
            block_cv("income_amt"),
            ATP,
            -1,
            360,
            "Coefficient of variation of income over the last twelve 30-day blocks.",
            "income varies a lot from month to month",
            "volatility",
        ),
        (
            "min_month_income_12m",
            block_min("income_amt"),
            ATP,
            1,
            360,
            "Smallest 30-day block of income among the last twelve.",
            "a month with little or no income",
            "dispersion",
        ),
        (
            "income_last_minus_mean_12m",
            last_minus_mean("income_amt"),
            ATP,
            1,
            360,
            "Last 30 days of income minus the 12-block mean, over that mean.",
            "income fell in the last month",
            "last minus mean",
        ),
        (
            "income_trend_90d_365d",
            safe_ratio(_col("income_amt_90d"), _col("income_amt_365d") * 90 / 365),
            ATP,
            1,
            365,
            "Income of the last 90 days over the 90-day average of the last 365 (1 = flat).",
            "income is falling",
            "trend",
        ),
        (
            "income_gap_mean_365d",
            _income_gap_mean(365),
            ATP,
            0,
            365,
            "Mean days between income days in the 365 days before as_of.",
            "income arrives rarely",
            "regularity",
        ),
        (
            "income_gap_std_365d",
            _gap_std(365),
            ATP,
            -1,
            365,
            "Standard deviation of the days between income days in the 365 days before as_of.",
            "income arrives at irregular intervals",
            "regularity",
        ),
        (
            "days_since_last_income",
            days_since("last_income_cnt_day"),
            ATP,
            -1,
            None,
            "Days since the last income before as_of (null if never).",
            "no income for a long time",
            "recency",
        ),
        (
            "last_balance",
            _col("closing_fen") / FEN,
            ATP,
            1,
            None,
            "Closing balance on the last day with a reported balance before as_of.",
            "low account balance",
            "recency",
        ),
        (
            "bill_to_income_90d",
            safe_ratio(_col("bill_amt_90d"), _col("income_amt_90d")),
            ATP,
            0,
            90,
            "Bill payments over income in the 90 days before as_of.",
            "bills take much of income",
            "ratio",
        ),
        (
            "bill_to_income_365d",
            safe_ratio(_col("bill_amt_365d"), _col("income_amt_365d")),
            ATP,
            -1,
            365,
            "Bill payments (rent, instalments to others, utilities) over income in the 365 days "
            "before as_of.",
            "fixed bills take much of income",
            "ratio",
        ),
        (
            "spend_to_income_90d",
            safe_ratio(_col("purchase_amt_90d"), _col("income_amt_90d")),
            ATP,
            -1,
            90,
            "Purchases over income in the 90 days before as_of.",
            "spends most of income",
            "ratio",
        ),
        (
            "spend_to_income_365d",
            safe_ratio(_col("purchase_amt_365d"), _col("income_amt_365d")),
            ATP,
            -1,
            365,
            "Purchases over income in the 365 days before as_of.",
            "spent most of income over the last year",
            "ratio",
        ),
        (
            "income_count_last_over_usual_12m",
            last_over_usual("income_cnt", "txn_cnt"),
            ATP,
            1,
            360,
            "Income payments in the last 30 days over the mean of the last twelve active 30-day "
            "blocks (0 = no income last month).",
            "income stopped in the last month",
            "last minus mean",
        ),
        (
            "income_overdue_ratio",
            safe_ratio(days_since("last_income_cnt_day"), _income_gap_mean(365)),
            ATP,
            -1,
            365,
            "Days since the last income over the mean gap between income days of the last 365 "
            "days (above 1: income is later than usual).",
            "income is later than usual",
            "regularity",
        ),
        (
            "bill_shortfall_12m",
            block_shortfall("bill_cnt", "txn_cnt"),
            BEH,
            -1,
            360,
            "Share of the usual monthly bill payments missed over the last twelve active 30-day "
            "blocks (0 = never short).",
            "missed regular bill payments",
            "regularity",
        ),
        (
            "bills_last_over_usual_12m",
            last_over_usual("bill_cnt", "txn_cnt"),
            BEH,
            1,
            360,
            "Bill payments in the last 30 days over the mean of the last twelve active 30-day "
            "blocks.",
            "fewer bills paid than usual in the last month",
            "last minus mean",
        ),
        (
            "bill_months_12m",
            active_blocks("bill_cnt"),
            BEH,
            1,
            360,
            "Number of the last twelve 30-day blocks with a bill payment.",
            "bills not paid regularly",
            "active months",
        ),
        (
            "active_months_12m",
            active_blocks("out_amt"),
            BEH,
            1,
            360,
            "Number of the last twelve 30-day blocks with any spending.",
            "inactive in several months of the last year",
            "active months",
        ),
        (
            "spending_cv_12m",
            block_cv("purchase_amt"),
            BEH,
            -1,
            360,
            "Coefficient of variation of purchases over the last twelve 30-day blocks.",
            "erratic spending",
            "volatility",
        ),
        (
            "spending_last_minus_mean_12m",
            last_minus_mean("purchase_amt"),
            BEH,
            0,
            360,
            "Last 30 days of purchases minus the 12-block mean, over that mean.",
            "unusual spending in the last month",
            "last minus mean",
        ),
        (
            "spending_trend_30d_180d",
            safe_ratio(_col("purchase_amt_30d"), _col("purchase_amt_180d") / 6),
            BEH,
            0,
            180,
            "Purchases of the last 30 days over the 30-day average of the last 180 (1 = flat).",
            "change in spending",
            "trend",
        ),
        (
            "purchase_log_std_365d",
            _log_std(365),
            BEH,
            0,
            365,
            "Standard deviation of ln(1 + purchase amount) in the 365 days before as_of.",
            "purchase sizes vary widely",
            "dispersion",
        ),
        (
            "days_since_last_txn",
            days_since("last_txn_cnt_day"),
            BEH,
            -1,
            None,
            "Days since the last transaction before as_of (null if never).",
            "no account activity for a long time",
            "recency",
        ),
        (
            "transfer_out_share_90d",
            safe_ratio(_col("transfer_out_amt_90d"), _col("out_amt_90d")),
            BEH,
            0,
            90,
            "Transfers out over all money out in the 90 days before as_of.",
            "much money sent to other people",
            "ratio",
        ),
        (
            "night_txn_share_90d",
            safe_ratio(_col("night_cnt_90d"), _col("txn_cnt_90d")),
            BEH,
            0,
            90,
            "Share of transactions between 00:00 and 06:00 UTC in the 90 days before as_of.",
            "unusual hours",
            "habit",
        ),
        (
            "channel_hhi_365d",
            hhi([_col(f"ch_{c}_cnt_365d") for c in CHANNELS]),
            BEH,
            0,
            365,
            "Herfindahl index of transactions across channels in the 365 days before as_of.",
            "reliance on one channel",
            "concentration",
        ),
        (
            "repayment_count_365d",
            _col("repay_cnt_365d"),
            BEH,
            0,
            365,
            "Loan repayments made in the 365 days before as_of.",
            "repayment activity",
            "windowed count",
        ),
        (
            "counterparties_ever",
            _col("cp_new_ever"),
            CON,
            0,
            None,
            "Distinct counterparties the consumer transacted with before as_of.",
            "size of the payment network",
            "network size",
        ),
        (
            "new_counterparties_30d",
            _col("cp_new_30d"),
            CON,
            0,
            30,
            "Counterparties seen for the first time in the 30 days before as_of.",
            "many new counterparties",
            "network size",
        ),
        (
            "counterparty_hhi_ever",
            safe_ratio(_col("cp_sq_ever"), _col("cp_n_ever") ** 2),
            CON,
            0,
            None,
            "Herfindahl index of transactions across counterparties before as_of.",
            "transactions concentrated on few counterparties",
            "concentration",
        ),
        (
            "delinquent_counterparty_share_ever",
            safe_ratio(_col("cp_bad_new_ever"), _col("cp_new_ever")),
            CON,
            -1,
            None,
            "Share of the consumer's counterparties 30+ days past due on a loan before as_of.",
            "many counterparties are delinquent borrowers",
            "counterparty quality",
        ),
    ]
    for name, expr, dim, monotone, window, description, reason, family in single:
        b.declare(
            name,
            expr,
            dimension=dim,
            monotone=monotone,
            description=description,
            reason=reason,
            window_days=window,
            family=family,
        )
    _declare_cash_flow(b)
    b.declare(
        "spending_categories_ever", _col("cat_new_ever"),
        dimension=BEH, monotone=0, family="concentration",
        description="Distinct merchant industries the consumer bought from before as_of.",
        reason="narrow spending pattern",
    )  # fmt: skip
    b.declare(
        "category_hhi_ever", safe_ratio(_col("cat_sq_ever"), _col("cat_n_ever") ** 2),
        dimension=BEH, monotone=0, family="concentration",
        description="Herfindahl index of purchases across merchant industries before as_of.",
        reason="spending concentrated in one kind of merchant",
    )  # fmt: skip
    declare_credit_history(b, rules)
    declare_identity(b, "consumer")
    b.declare(
        "age_years",
        pl.col(AS_OF).dt.year() - pl.col("birth_year"),
        dimension="identity", monotone=0, family="demographic",
        description="Age in whole years at as_of, from the birth year.", reason="age",
    )  # fmt: skip
    return b.build()
