"""Merchant features: measures aggregated once, families declared over windows and blocks.

Every feature is declared in the catalog :func:`catalog` returns (its windowed families over
the configured windows) with its dimension, window, monotone direction, description and reason
text; the expressions read the per-snapshot aggregate frame built by :func:`aggregates`.
:mod:`features.definitions` assembles these for :func:`features.build.build`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import polars as pl

from features.blocks import (
    active_block_mean,
    active_blocks,
    block_cv,
    block_max,
    block_min,
    block_slope,
    days_since,
    hhi,
    last_minus_mean,
    last_over_usual,
    safe_ratio,
)
from features.build import Inputs
from features.catalog import TRADING_AND_MONEY, Actionability, Catalog, CatalogBuilder
from features.contract.repayments import RepaymentRules
from features.contract.segments import MERCHANT
from features.contract.tables import CHANNELS
from features.history import (
    DEBT_STILL_OWED,
    declare_credit_history,
    declare_identity,
    delinquency_onset,
    per_snapshot,
)
from features.keys import ENTITY, FEN, KEY, SECOND, Snapshots, fen, fixed, id_hash, weekday_of
from features.partners import partner_measures, read_partners
from features.timeline import ROWS, Timeline, read_sums, windows_of

SEGMENT = MERCHANT.name
PARTNER_WINDOWS: tuple[int, ...] = (30, 90, 365)

_kind = pl.col("kind")
_sale = _kind == "sale"
_amount = pl.col("amount_fen")
_log = pl.col("log_amount_fx")


def _when(condition: pl.Expr, value: pl.Expr | int = 1) -> pl.Expr:
    return pl.when(condition).then(value).otherwise(0)


MEASURES: dict[str, pl.Expr] = {
    "txn_cnt": ROWS,
    "sale_cnt": _sale,
    "sale_amt": _when(_sale, _amount),
    "refund_cnt": _kind == "refund",
    "refund_amt": _when(_kind == "refund", _amount),
    "chargeback_cnt": _kind == "chargeback",
    "chargeback_amt": _when(_kind == "chargeback", _amount),
    "payout_amt": _when(_kind == "payout", _amount),
    "fee_amt": _when(_kind == "fee", _amount),
    "sale_log_fx": _when(_sale, _log),
    "sale_logsq_fx": _when(_sale, (_log * _log) // 10_000),
    "anon_sale_cnt": _sale & pl.col("buyer_id").is_null(),
    "weekend_sale_cnt": _sale & (pl.col("weekday") >= 6),
    "night_sale_cnt": _sale & (pl.col("hour") < 6),
    # a trading day: the day's first sale (the previous sale was on another day)
    "sale_day": _sale
    & (pl.when(_sale).then(pl.col(KEY)).forward_fill().shift(1) != pl.col(KEY)).fill_null(True),
    **{f"ch_{c}_cnt": (pl.col("channel") == c).fill_null(False) for c in CHANNELS},
}
LAST_DAYS: dict[str, pl.Expr] = {
    "last_sale_cnt_day": _sale,
    "last_refund_cnt_day": _kind == "refund",
    "last_chargeback_cnt_day": _kind == "chargeback",
}


def narrow(events: pl.LazyFrame) -> pl.LazyFrame:
    """The columns of the merchant log the measures read, as compact numbers.

    ``kind`` and ``channel`` become categoricals, ``buyer_id`` its 64-bit hash and the amount
    integer fen.
    """
    return events.select(
        ENTITY,
        "ts",
        pl.col("kind").cast(pl.Categorical),
        fen(pl.col("amount")).alias("amount_fen"),
        id_hash("buyer_id").alias("buyer_id"),
        pl.col("channel").cast(pl.Categorical),
    )


# Computed once per event after the sort (fewer columns to move), read by several measures.
DERIVED: dict[str, pl.Expr] = {
    "log_amount_fx": fixed((pl.col("amount_fen") / FEN).clip(lower_bound=0).log1p()),
    "hour": pl.col(SECOND) // 3600,
    "weekday": weekday_of(pl.col(KEY)),
}


def aggregates(
    snaps: Snapshots,
    events: pl.DataFrame,
    inputs: Inputs,
    wanted: set[str],
    *,
    rules: RepaymentRules,
) -> pl.LazyFrame:
    """The per-snapshot columns the merchant catalog's expressions read.

    ``events`` is the encoded log of the snapshots' entities (:func:`narrow`, then
    :func:`features.keys.encode_events`).
    """
    windows = windows_of(wanted)

    def activity() -> dict[str, pl.Series]:
        timeline = Timeline(events, MEASURES)
        columns = read_sums(timeline, snaps, wanted, windows=windows)
        columns.update(timeline.read(snaps, last_days=LAST_DAYS, first_day=True))
        return columns

    def buyers() -> dict[str, pl.Series]:
        onset = delinquency_onset(inputs.loans, inputs.repayments, rules)
        main, bad = partner_measures(
            events.lazy().filter(_sale),
            "buyer_id",
            windows=PARTNER_WINDOWS,
            onset=onset,
            prefix="buyer",
        )
        return read_partners(
            main,
            bad,
            snaps,
            wanted,
            prefix="buyer",
            windows=windows,
            partner_windows=PARTNER_WINDOWS,
        )

    return per_snapshot(snaps, [activity, buyers], inputs, MERCHANT, rules)


def policy_inputs(net_margin: float) -> list[pl.Expr]:
    """Cash-flow and delinquency inputs of the limit engine (not model features).

    ``net_margin`` is the share of net sales assumed free to service debt (params
    ``features.merchant_net_margin``): the log holds no costs.
    """
    inflow = ((pl.col("sale_amt_90d") - pl.col("refund_amt_90d")) / 3).clip(lower_bound=0)
    return [
        inflow.alias("monthly_inflow"),
        (inflow * net_margin).alias("monthly_free_cash_flow"),
        pl.col("current_dpd"),
    ]


# --- the catalog ---------------------------------------------------------------------------

ATP, BEH, CON = "ability_to_pay", "behaviour", "connections"

# What a merchant controls (recourse suggests only these): how it trades (sales, refunds,
# chargebacks, fees, regularity) but not who it is, whom it sells to, or the repayment record
# already made, except debt it can still pay: arrears, open loans, what is outstanding.
ACTIONABLE = Actionability(
    dimensions=TRADING_AND_MONEY,
    features={
        **DEBT_STILL_OWED,
        # ratios over the merchant's whole history: past events that future trading barely moves
        "refund_count_rate_ever": False,
        "chargeback_rate_ever": False,
    },
)


def _col(name: str) -> pl.Expr:
    return pl.col(name)


def _net(w: int) -> pl.Expr:
    return _col(f"sale_amt_{w}d") - _col(f"refund_amt_{w}d") - _col(f"chargeback_amt_{w}d")


def _buyer_sales(w: int | str) -> pl.Expr:
    suffix = f"{w}d" if isinstance(w, int) else w
    return _col(f"sale_cnt_{suffix}") - _col(f"anon_sale_cnt_{suffix}")


def catalog(windows: Sequence[int], rules: RepaymentRules) -> Catalog:
    """The merchant catalog; ``windows`` are the windows of the windowed families.

    ``rules`` say what late and default mean for the credit-history features.
    """
    b = CatalogBuilder(SEGMENT, basis=(("repayment_rules", asdict(rules)),), actionable=ACTIONABLE)
    # ability to pay: volume, net volume, losses to refunds and chargebacks
    b.per_window(
        windows, "sales_amount_{w}d", lambda w: _col(f"sale_amt_{w}d"),
        dimension=ATP, monotone=1, family="windowed sum",
        description="Sales in the {w} days before as_of.",
        reason="low sales over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "net_sales_{w}d", _net,
        dimension=ATP, monotone=1, family="windowed sum",
        description="Sales minus refunds and chargebacks in the {w} days before as_of.",
        reason="low net sales over the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "refund_rate_{w}d",
        lambda w: safe_ratio(_col(f"refund_amt_{w}d"), _col(f"sale_amt_{w}d")),
        dimension=ATP, monotone=-1, family="refund and chargeback ratio",
        description="Refunded amount over sales amount in the {w} days before as_of.",
        reason="a high share of sales refunded in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90, 365), "chargeback_rate_{w}d",
        lambda w: safe_ratio(_col(f"chargeback_cnt_{w}d"), _col(f"sale_cnt_{w}d")),
        dimension=ATP, monotone=-1, family="refund and chargeback ratio",
        description="Chargebacks per sale in the {w} days before as_of.",
        reason="many chargebacks in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90), "sales_per_active_day_{w}d",
        lambda w: safe_ratio(_col(f"sale_amt_{w}d"), _col(f"sale_day_{w}d")),
        dimension=ATP, monotone=1, family="windowed mean",
        description="Mean sales per trading day in the {w} days before as_of.",
        reason="low sales on a typical trading day",
    )  # fmt: skip
    single = [
        (
            "chargeback_amount_rate_365d",
            safe_ratio(_col("chargeback_amt_365d"), _col("sale_amt_365d")),
            ATP,
            -1,
            365,
            "Chargeback amount over sales amount in the 365 days before as_of.",
            "a high chargeback amount in the last year",
            "refund and chargeback ratio",
        ),
        (
            "payout_ratio_90d",
            safe_ratio(_col("payout_amt_90d"), _net(90)),
            ATP,
            0,
            90,
            "Payouts over net sales in the 90 days before as_of.",
            "payouts relative to net sales",
            "ratio",
        ),
        (
            "fee_ratio_90d",
            safe_ratio(_col("fee_amt_90d"), _col("sale_amt_90d")),
            ATP,
            0,
            90,
            "Platform fees over sales in the 90 days before as_of.",
            "fees relative to sales",
            "ratio",
        ),
        (
            "max_month_sales_12m",
            block_max("sale_amt"),
            ATP,
            1,
            360,
            "Best 30-day block of sales among the last twelve.",
            "no strong month of sales in the last year",
            "dispersion",
        ),
        (
            "min_month_sales_12m",
            block_min("sale_amt"),
            ATP,
            1,
            360,
            "Weakest 30-day block of sales among the last twelve.",
            "a very weak month of sales in the last year",
            "dispersion",
        ),
        (
            "min_month_sales_6m",
            block_min("sale_amt", 6),
            ATP,
            1,
            180,
            "Weakest 30-day block of sales among the last six.",
            "a very weak month of sales recently",
            "dispersion",
        ),
        # behaviour: activity, regularity, trend, volatility, recency, habits
        (
            "avg_ticket_30d",
            safe_ratio(_col("sale_amt_30d"), _col("sale_cnt_30d")),
            BEH,
            0,
            30,
            "Mean sale amount in the 30 days before as_of.",
            "typical sale size",
            "windowed mean",
        ),
        (
            "avg_ticket_90d",
            safe_ratio(_col("sale_amt_90d"), _col("sale_cnt_90d")),
            BEH,
            0,
            90,
            "Mean sale amount in the 90 days before as_of.",
            "typical sale size",
            "windowed mean",
        ),
        (
            "avg_ticket_365d",
            safe_ratio(_col("sale_amt_365d"), _col("sale_cnt_365d")),
            BEH,
            0,
            365,
            "Mean sale amount in the 365 days before as_of.",
            "typical sale size",
            "windowed mean",
        ),
        (
            "active_months_6m",
            active_blocks("sale_amt", 6),
            BEH,
            1,
            180,
            "Number of the last six 30-day blocks with any sales.",
            "trading in few of the last six months",
            "active months",
        ),
        (
            "active_months_12m",
            active_blocks("sale_amt"),
            BEH,
            1,
            360,
            "Number of the last twelve 30-day blocks with any sales.",
            "trading in few of the last twelve months",
            "active months",
        ),
        (
            "days_since_last_sale",
            days_since("last_sale_cnt_day"),
            BEH,
            -1,
            None,
            "Days since the last sale before as_of (null if never).",
            "no sales for a long time",
            "recency",
        ),
        (
            "days_since_last_refund",
            days_since("last_refund_cnt_day"),
            BEH,
            0,
            None,
            "Days since the last refund before as_of (null if never).",
            "a recent refund",
            "recency",
        ),
        (
            "days_since_last_chargeback",
            days_since("last_chargeback_cnt_day"),
            BEH,
            1,
            None,
            "Days since the last chargeback before as_of (null if never).",
            "a recent chargeback",
            "recency",
        ),
        (
            "sales_trend_7d_30d",
            safe_ratio(_col("sale_amt_7d"), _col("sale_amt_30d") * 7 / 30),
            BEH,
            1,
            30,
            "Sales of the last 7 days over the 7-day average of the last 30 (1 = flat).",
            "sales dropped in the last week",
            "trend",
        ),
        (
            "sales_trend_30d_180d",
            safe_ratio(_col("sale_amt_30d"), _col("sale_amt_180d") / 6),
            BEH,
            1,
            180,
            "Sales of the last 30 days over the 30-day average of the last 180 (1 = flat).",
            "sales have fallen recently",
            "trend",
        ),
        (
            "sales_trend_90d_365d",
            safe_ratio(_col("sale_amt_90d"), _col("sale_amt_365d") * 90 / 365),
            BEH,
            1,
            365,
            "Sales of the last 90 days over the 90-day average of the last 365 (1 = flat).",
            "sales have fallen over the last quarter",
            "trend",
        ),
        (
            "sales_slope_6m",
            block_slope("sale_amt", 6),
            BEH,
            1,
            180,
            "Least-squares slope of the last six 30-day sales blocks, over their mean.",
            "sales are shrinking month by month",
            "trend",
        ),
        (
            "sales_slope_12m",
            block_slope("sale_amt"),
            BEH,
            1,
            360,
            "Least-squares slope of the last twelve 30-day sales blocks, over their mean.",
            "sales shrank over the last year",
            "trend",
        ),
        (
            "sales_cv_6m",
            block_cv("sale_amt", 6),
            BEH,
            -1,
            180,
            "Coefficient of variation of sales over the last six 30-day blocks.",
            "sales are volatile from month to month",
            "volatility",
        ),
        (
            "sales_cv_12m",
            block_cv("sale_amt"),
            BEH,
            -1,
            360,
            "Coefficient of variation of sales over the last twelve 30-day blocks.",
            "sales were volatile over the last year",
            "volatility",
        ),
        (
            "sales_count_cv_12m",
            block_cv("sale_cnt"),
            BEH,
            -1,
            360,
            "Coefficient of variation of the number of sales over the last twelve 30-day blocks.",
            "irregular order flow",
            "volatility",
        ),
        (
            "sales_last_minus_mean_12m",
            last_minus_mean("sale_amt"),
            BEH,
            1,
            360,
            "Last 30 days of sales minus the 12-block mean, over that mean.",
            "the last month was weaker than usual",
            "last minus mean",
        ),
        (
            "refund_last_minus_mean_12m",
            last_minus_mean("refund_amt"),
            BEH,
            -1,
            360,
            "Last 30 days of refunds minus the 12-block mean, over that mean.",
            "refunds rose in the last month",
            "last minus mean",
        ),
        (
            "refund_rate_change_90d_365d",
            safe_ratio(_col("refund_amt_90d"), _col("sale_amt_90d"))
            - safe_ratio(_col("refund_amt_365d"), _col("sale_amt_365d")),
            BEH,
            -1,
            365,
            "Refund rate of the last 90 days minus that of the last 365.",
            "the refund rate is rising",
            "trend",
        ),
        (
            "ticket_log_mean_365d",
            safe_ratio(_col("sale_log_fx_365d"), _col("sale_cnt_365d")),
            BEH,
            0,
            365,
            "Mean of ln(1 + sale amount) over sales in the 365 days before as_of.",
            "typical sale size",
            "windowed mean",
        ),
        (
            "weekend_sale_share_90d",
            safe_ratio(_col("weekend_sale_cnt_90d"), _col("sale_cnt_90d")),
            BEH,
            0,
            90,
            "Share of sales on Saturdays and Sundays in the 90 days before as_of.",
            "weekend-heavy trading",
            "habit",
        ),
        (
            "night_sale_share_90d",
            safe_ratio(_col("night_sale_cnt_90d"), _col("sale_cnt_90d")),
            BEH,
            0,
            90,
            "Share of sales between 00:00 and 06:00 UTC in the 90 days before as_of.",
            "unusual trading hours",
            "habit",
        ),
        (
            "channel_hhi_365d",
            hhi([_col(f"ch_{c}_cnt_365d") for c in CHANNELS]),
            BEH,
            0,
            365,
            "Herfindahl index of transactions across channels in the 365 days before as_of.",
            "reliance on one sales channel",
            "concentration",
        ),
        (
            "txn_count_365d",
            _col("txn_cnt_365d"),
            BEH,
            0,
            365,
            "Transactions of any kind in the 365 days before as_of.",
            "overall activity",
            "windowed count",
        ),
        # counts, not amounts: a refund or an order is one event whatever its size, so rates
        # and trends of counts are far less noisy than those of money for small merchants
        (
            "refund_count_rate_365d",
            safe_ratio(_col("refund_cnt_365d"), _col("sale_cnt_365d")),
            ATP,
            -1,
            365,
            "Refunds per sale in the 365 days before as_of.",
            "many orders refunded in the last year",
            "refund and chargeback ratio",
        ),
        (
            "refund_count_rate_ever",
            safe_ratio(_col("refund_cnt_ever"), _col("sale_cnt_ever")),
            ATP,
            -1,
            None,
            "Refunds per sale over the merchant's whole history before as_of.",
            "many orders refunded over the merchant's history",
            "refund and chargeback ratio",
        ),
        (
            "chargeback_rate_ever",
            safe_ratio(_col("chargeback_cnt_ever"), _col("sale_cnt_ever")),
            ATP,
            -1,
            None,
            "Chargebacks per sale over the merchant's whole history before as_of.",
            "many chargebacks over the merchant's history",
            "refund and chargeback ratio",
        ),
        (
            "orders_per_active_month_12m",
            active_block_mean("sale_cnt", "sale_cnt"),
            ATP,
            1,
            360,
            "Mean number of sales per 30-day block with any sales, among the last twelve.",
            "few orders in a typical month",
            "windowed mean",
        ),
        (
            "orders_last_over_usual_12m",
            last_over_usual("sale_cnt", "sale_cnt"),
            BEH,
            1,
            360,
            "Sales in the last 30 days over the mean of the last twelve 30-day blocks with "
            "sales (1 = an ordinary month).",
            "far fewer orders than usual in the last month",
            "last minus mean",
        ),
        (
            "trading_days_last_over_usual_12m",
            last_over_usual("sale_day", "sale_day"),
            BEH,
            1,
            360,
            "Trading days in the last 30 days over the mean of the last twelve 30-day blocks "
            "with sales (1 = an ordinary month).",
            "far fewer trading days than usual in the last month",
            "last minus mean",
        ),
        # connections: the buyer network
        (
            "buyers_ever",
            _col("buyer_new_ever"),
            CON,
            1,
            None,
            "Distinct buyers the merchant sold to before as_of.",
            "a small customer base",
            "network size",
        ),
        (
            "buyer_hhi_ever",
            safe_ratio(_col("buyer_sq_ever"), _col("buyer_n_ever") ** 2),
            CON,
            -1,
            None,
            "Herfindahl index of sales across buyers before as_of (1 = a single buyer).",
            "sales depend on few buyers",
            "concentration",
        ),
        (
            "sales_per_buyer_365d",
            safe_ratio(_buyer_sales(365), _col("buyer_d365_ever")),
            CON,
            0,
            365,
            "Sales per distinct buyer in the 365 days before as_of.",
            "buyers rarely come back",
            "network size",
        ),
        (
            "delinquent_buyer_share_ever",
            safe_ratio(_col("buyer_bad_new_ever"), _col("buyer_new_ever")),
            CON,
            -1,
            None,
            "Share of the merchant's buyers who were 30+ days past due on a loan before as_of.",
            "many buyers are themselves delinquent borrowers",
            "counterparty quality",
        ),
        (
            "delinquent_buyers_ever",
            _col("buyer_bad_new_ever"),
            CON,
            0,
            None,
            "Buyers who were 30+ days past due on a loan before as_of.",
            "delinquent buyers",
            "counterparty quality",
        ),
        (
            "anonymous_sale_share_90d",
            safe_ratio(_col("anon_sale_cnt_90d"), _col("sale_cnt_90d")),
            CON,
            0,
            90,
            "Share of sales without an identified buyer in the 90 days before as_of.",
            "many sales without a known buyer",
            "network size",
        ),
        (
            "buyer_retention_30d_365d",
            safe_ratio(_col("buyer_d30_ever"), _col("buyer_d365_ever")),
            CON,
            1,
            365,
            "Distinct buyers of the last 30 days over those of the last 365.",
            "few of last year's buyers are still active",
            "trend",
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
    b.per_window(
        windows, "sales_count_{w}d", lambda w: _col(f"sale_cnt_{w}d"),
        dimension=BEH, monotone=1, family="windowed count",
        description="Number of sales in the {w} days before as_of.",
        reason="few sales in the last {w} days",
    )  # fmt: skip
    b.per_window(
        windows, "active_days_{w}d", lambda w: _col(f"sale_day_{w}d"),
        dimension=BEH, monotone=1, family="active days",
        description="Days with at least one sale in the {w} days before as_of.",
        reason="few trading days in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (90, 365), "ticket_log_std_{w}d",
        lambda w: _log_std(f"sale_log_fx_{w}d", f"sale_logsq_fx_{w}d", f"sale_cnt_{w}d"),
        dimension=BEH, monotone=0, family="dispersion",
        description="Standard deviation of ln(1 + sale amount) over sales in the {w} days "
        "before as_of.",
        reason="sale sizes vary widely",
    )  # fmt: skip
    b.per_window(
        PARTNER_WINDOWS, "distinct_buyers_{w}d", lambda w: _col(f"buyer_d{w}_ever"),
        dimension=CON, monotone=1, family="network size",
        description="Distinct buyers in the {w} days before as_of.",
        reason="few distinct buyers in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (30, 90), "new_buyers_{w}d", lambda w: _col(f"buyer_new_{w}d"),
        dimension=CON, monotone=1, family="network size",
        description="Buyers seen for the first time in the {w} days before as_of.",
        reason="few new buyers in the last {w} days",
    )  # fmt: skip
    b.per_window(
        (90, 365), "repeat_sale_share_{w}d",
        lambda w: safe_ratio(_col(f"buyer_repeat_{w}d"), _buyer_sales(w)),
        dimension=CON, monotone=1, family="repeat rate",
        description="Share of identified sales in the {w} days before as_of made to buyers "
        "seen on an earlier day.",
        reason="few returning buyers",
    )  # fmt: skip
    b.per_window(
        (90, 365), "risky_sale_share_{w}d",
        lambda w: safe_ratio(_col(f"buyer_risky_{w}d"), _buyer_sales(w)),
        dimension=CON, monotone=-1, family="counterparty quality",
        description="Share of identified sales in the {w} days before as_of made to buyers "
        "already 30+ days past due on a loan at the time of sale.",
        reason="sells to delinquent borrowers",
    )  # fmt: skip
    declare_credit_history(b, rules)
    declare_identity(b, "merchant")
    return b.build()


def _log_std(log_sum: str, log_sq_sum: str, count: str) -> pl.Expr:
    n = _col(count)
    mean = _col(log_sum) / n
    var = (_col(log_sq_sum) / n - mean * mean) * n / (n - 1)
    return pl.when(n > 1).then(var.clip(lower_bound=0).sqrt())
