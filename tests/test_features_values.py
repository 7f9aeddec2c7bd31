"""Hand-computed feature values on a tiny log, a brute-force reference, snapshots, determinism."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.features_helpers import (
    AS_OF,
    consumer_events,
    features,
    inputs,
    loans,
    merchant_events,
    repayments,
)

D = dt.datetime


@pytest.fixture(scope="module")
def merchant_case() -> pl.DataFrame:
    events = merchant_events(
        [
            ("M1", D(2024, 6, 25, 10), "sale", 100.0, "C1"),
            ("M1", D(2024, 6, 1, 9), "sale", 50.0, "C2"),
            ("M1", D(2024, 5, 20, 12), "refund", 20.0, None),
            ("M1", D(2024, 4, 10, 8), "sale", 30.0, "C1"),
            ("M1", D(2023, 12, 1, 8), "chargeback", 5.0, None),
            ("M1", D(2024, 7, 1, 0), "sale", 1000.0, "C3"),  # at as_of: never counted
        ]
    )
    loan_rows = loans(
        [
            ("L1", "merchant", "M1", dt.date(2024, 1, 1), 300.0, 3),
            ("L2", "consumer", "C2", dt.date(2024, 1, 15), 100.0, 1),
        ]
    )
    repayment_rows = repayments(
        [
            ("L1", 1, dt.date(2024, 2, 1), 100.0, dt.date(2024, 2, 11), 100.0),
            ("L1", 2, dt.date(2024, 3, 1), 100.0, None, 0.0),
            ("L1", 3, dt.date(2024, 8, 1), 100.0, None, 0.0),
            ("L2", 1, dt.date(2024, 3, 1), 100.0, None, 0.0),  # C2 30+ DPD from 2024-03-31
        ]
    )
    spine = pl.DataFrame({"entity_id": ["M1", "M2"], "as_of": [AS_OF, AS_OF]})
    data = inputs("merchant", events, ["M1", "M2"], loan_rows, repayment_rows)
    return features("merchant", spine, data)


def test_hand_computed_merchant_values(merchant_case: pl.DataFrame) -> None:
    m1 = merchant_case.row(0, named=True)
    expected = {
        "sales_amount_7d": 100.0,
        "sales_amount_30d": 150.0,
        "sales_amount_90d": 180.0,
        "sales_count_90d": 3,
        "net_sales_90d": 160.0,
        "refund_rate_90d": 20 / 180,
        "chargeback_rate_365d": 1 / 3,
        "active_days_30d": 2,
        "days_since_last_sale": 6,
        "days_since_last_refund": 42,
        "buyers_ever": 2,
        "distinct_buyers_30d": 2,
        "distinct_buyers_90d": 2,
        "new_buyers_30d": 1,
        "repeat_sale_share_90d": 1 / 3,
        "buyer_hhi_ever": 5 / 9,
        "delinquent_buyer_share_ever": 1 / 2,
        "risky_sale_share_90d": 1 / 3,
        "prior_loans": 1,
        "prior_installments_due": 2,
        "prior_max_dpd": 122,
        "days_past_due_now": 122,
        "prior_late_share": 1.0,
        "repaid_share": 0.5,
        "open_loans": 1,
        "outstanding_due": 200.0,
        "tenure_days": (AS_OF - dt.date(2022, 1, 1)).days,
        "current_dpd": 122,
        "monthly_inflow": (180 - 20) / 3,
        # blocks of 30 days back from as_of: sales 2 in block 0 (Jun 1, Jun 25), 1 in block 2
        "refund_count_rate_365d": 1 / 3,
        "refund_count_rate_ever": 1 / 3,
        "chargeback_rate_ever": 1 / 3,
        "orders_per_active_month_12m": 1.5,
        "orders_last_over_usual_12m": 2 / 1.5,
        "trading_days_last_over_usual_12m": 2 / 1.5,
    }
    for name, value in expected.items():
        assert m1[name] == pytest.approx(value), name


def test_entity_without_events_reads_zero_or_null(merchant_case: pl.DataFrame) -> None:
    m2 = merchant_case.row(1, named=True)
    assert m2["sales_amount_365d"] == 0
    assert m2["buyers_ever"] == 0
    assert m2["days_since_last_sale"] is None
    assert m2["refund_rate_90d"] is None
    assert m2["prior_loans"] == 0
    # no month with sales: no usual month to compare with, so no ratio to it
    for name in ("refund_count_rate_ever", "orders_per_active_month_12m"):
        assert m2[name] is None, name
    assert m2["orders_last_over_usual_12m"] is None


def test_hand_computed_consumer_values() -> None:
    events = consumer_events(
        [
            ("C1", D(2024, 6, 28, 9), "income", 5000.0, None, 6000.0),
            ("C1", D(2024, 5, 28, 9), "income", 5000.0, None, None),
            ("C1", D(2024, 4, 28, 9), "income", 4000.0, None, 3000.0),
            ("C1", D(2024, 6, 29, 9), "purchase", 200.0, "M1", 5800.0),
            ("C1", D(2024, 6, 20, 9), "transfer_out", 50.0, "C9", 80.0),
            ("C1", D(2024, 6, 30, 23), "repayment", 1000.0, "M1", 4800.0),
        ]
    )
    spine = pl.DataFrame({"entity_id": ["C1"], "as_of": [AS_OF]})
    row = features("consumer", spine, inputs("consumer", events, ["C1"])).row(0, named=True)
    expected = {
        "income_30d": 5000.0,
        "income_90d": 14000.0,
        "inflow_30d": 5000.0,
        "net_flow_30d": 5000.0 - 1250.0,
        "outflow_to_inflow_30d": 1250 / 5000,
        "repayment_to_income_90d": 1000 / 14000,
        "income_gap_mean_365d": (30 + 31) / 2,
        "days_since_last_income": 3,
        "last_balance": 4800.0,
        "low_balance_days_30d": 0,  # 80 on 6-20 is over a quarter of a 17-a-month outflow
        "counterparties_ever": 2,
        "distinct_counterparties_30d": 2,
        "repeat_counterparty_share_90d": 1 / 3,
        "days_since_last_txn": 1,
        "income_months_12m": 3,
        "age_years": 34,
        "spend_to_income_90d": 200 / 14000,
        "bill_to_income_365d": 0.0,
        "income_count_last_over_usual_12m": 1.0,  # one income in each active block
        "income_overdue_ratio": 3 / 30.5,
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value), name
    assert row["bill_shortfall_12m"] is None  # no bills: nothing was expected


def test_bill_shortfall_and_last_over_usual() -> None:
    """Bills per 30-day block 2, 1, 2, 2 (block 0 first): the usual month is 7/4, rounded to 2."""
    bill_days = [D(2024, 6, 10), D(2024, 6, 20), D(2024, 5, 10)]
    bill_days += [D(2024, 4, 10), D(2024, 4, 20), D(2024, 3, 10), D(2024, 3, 20)]
    events = consumer_events(
        [("C1", ts, "bill_payment", 100.0, None, None) for ts in bill_days]
        + [("C1", D(2024, 6, 5), "purchase", 300.0, "M1", None)]
        + [("C1", D(2024, 6, 1), "income", 3000.0, None, None)]
    )
    spine = pl.DataFrame({"entity_id": ["C1"], "as_of": [AS_OF]})
    row = features("consumer", spine, inputs("consumer", events, ["C1"])).row(0, named=True)
    assert row["bill_shortfall_12m"] == pytest.approx(1 / 8)  # one of 4 x 2 expected missing
    assert row["bills_last_over_usual_12m"] == pytest.approx(2 / (7 / 4))
    assert row["income_count_last_over_usual_12m"] == pytest.approx(1 / (1 / 4))
    assert row["spend_to_income_365d"] == pytest.approx(300 / 3000)
    assert row["bill_to_income_365d"] == pytest.approx(700 / 3000)


def _random_log(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "us")
    seconds = rng.integers(0, 600 * 86_400, n).astype("timedelta64[s]")
    return merchant_events(
        list(
            zip(
                [f"M{i}" for i in rng.integers(0, 4, n)],
                (start + seconds).tolist(),
                rng.choice(["sale", "sale", "sale", "refund", "fee"], n).tolist(),
                np.round(rng.uniform(1, 500, n), 2).tolist(),
                [None if b < 0 else f"C{b}" for b in rng.integers(-2, 15, n)],
                strict=True,
            )
        )
    )


def _spine() -> pl.DataFrame:
    dates = [dt.date(2023, 3, 5), dt.date(2023, 11, 20), dt.date(2024, 6, 1), dt.date(2025, 1, 1)]
    return pl.DataFrame(
        {"entity_id": [f"M{i}" for i in range(5) for _ in dates], "as_of": dates * 5}
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_window_sums_and_distinct_counts_match_brute_force(seed: int) -> None:
    events = _random_log(seed)
    spine = _spine()
    got = features("merchant", spine, inputs("merchant", events, []))
    day = pl.col("ts").dt.date()
    pairs = spine.join(events, on="entity_id", how="left").filter(day < pl.col("as_of"))
    aggs = []
    for w in (30, 90, 365):
        inside = day >= pl.col("as_of") - pl.duration(days=w)
        sale = (pl.col("kind") == "sale") & inside
        aggs += [
            pl.col("amount").filter(sale).sum().alias(f"sales_amount_{w}d"),
            sale.sum().alias(f"sales_count_{w}d"),
            pl.col("buyer_id").filter(sale).drop_nulls().n_unique().alias(f"distinct_buyers_{w}d"),
            day.filter(sale).n_unique().alias(f"active_days_{w}d"),
        ]
    sale = pl.col("kind") == "sale"
    aggs += [
        pl.col("buyer_id").filter(sale).drop_nulls().n_unique().alias("buyers_ever"),
        (pl.col("as_of").first() - day.filter(sale).max())
        .dt.total_days()
        .alias("days_since_last_sale"),
    ]
    want = pairs.group_by("entity_id", "as_of").agg(aggs)
    columns = [c for c in want.columns if c not in ("entity_id", "as_of")]
    joined = spine.join(want, on=["entity_id", "as_of"], how="left").with_columns(
        pl.col(c).fill_null(0) for c in columns if c != "days_since_last_sale"
    )
    compare = got.select("entity_id", "as_of", *columns).sort("entity_id", "as_of")
    expected = joined.select(compare.columns).sort("entity_id", "as_of")
    assert_frame_equal(compare, expected, check_dtypes=False, abs_tol=1e-6)


def test_many_snapshots_equal_one_at_a_time() -> None:
    events = _random_log(3)
    data = inputs("merchant", events, [])
    spine = _spine()
    together = features("merchant", spine, data)
    apart = pl.concat([features("merchant", spine.slice(i, 1), data) for i in range(spine.height)])
    assert_frame_equal(together, apart)


def test_same_data_gives_identical_features() -> None:
    events = _random_log(4)
    spine = _spine()
    first = features("merchant", spine, inputs("merchant", events, []))
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=1)
    again = features("merchant", spine, inputs("merchant", shuffled, []))
    assert_frame_equal(first, again)
    assert first.select("entity_id", "as_of").equals(spine)


def test_chunked_by_entity_equals_one_pass() -> None:
    events = _random_log(5)
    data = inputs("merchant", events, [])
    spine = _spine()
    one = features("merchant", spine, data)
    assert_frame_equal(one, features("merchant", spine, data, chunks=3))
    assert_frame_equal(one, features("merchant", spine, data, streaming=True))


def test_repeated_builds_are_identical() -> None:
    """Parallel execution must not reorder snapshots: the same inputs give the same features.

    Regression: a lazy sort followed by a positional reshape in an earlier engine once swapped
    the values of one entity's snapshots between runs on several threads.
    """
    events = _random_log(5)
    data = inputs("merchant", events, [])
    spine = _spine()
    first = features("merchant", spine, data)
    for _ in range(12):
        assert_frame_equal(first, features("merchant", spine, data))


def _random_consumer_log(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "us")
    seconds = rng.integers(0, 600 * 86_400, n).astype("timedelta64[s]")
    kinds = rng.choice(["income", "purchase", "purchase", "transfer_out", "bill_payment"], n)
    return consumer_events(
        list(
            zip(
                [f"C{i}" for i in rng.integers(0, 4, n)],
                (start + seconds).tolist(),
                kinds.tolist(),
                np.round(rng.uniform(1, 3000, n), 2).tolist(),
                [None if b < 0 else f"M{b}" for b in rng.integers(-3, 8, n)],
                [None if b < 50 else float(b) for b in rng.integers(0, 400, n)],
                strict=True,
            )
        )
    )


def test_consumer_snapshots_equal_one_at_a_time_and_a_subset_of_entities() -> None:
    """Each snapshot alone (the log then holds other entities' events) equals it among all."""
    events = _random_consumer_log(6)
    data = inputs("consumer", events, [])
    dates = [dt.date(2023, 3, 5), dt.date(2023, 11, 20), dt.date(2024, 6, 1)]
    spine = pl.DataFrame(
        {"entity_id": [f"C{i}" for i in range(5) for _ in dates], "as_of": dates * 5}
    )
    together = features("consumer", spine, data)
    apart = pl.concat([features("consumer", spine.slice(i, 1), data) for i in range(spine.height)])
    assert_frame_equal(together, apart)
    assert together["income_90d"].drop_nulls().sum() > 0


def test_closing_balance_is_the_days_last_reported_balance() -> None:
    """Within a day the last event (by time, then log order for equal times) sets the balance."""
    events = consumer_events(
        [
            ("C1", D(2024, 6, 29, 18), "purchase", 10.0, "M1", 500.0),
            ("C1", D(2024, 6, 29, 9), "purchase", 10.0, "M1", 700.0),
            ("C1", D(2024, 6, 30, 8), "purchase", 10.0, "M1", 90.0),
            ("C1", D(2024, 6, 30, 8), "purchase", 10.0, "M1", 80.0),  # same time, later row
            ("C1", D(2024, 6, 30, 12), "purchase", 10.0, "M1", None),  # no balance reported
        ]
    )
    spine = pl.DataFrame({"entity_id": ["C1", "C1"], "as_of": [dt.date(2024, 6, 30), AS_OF]})
    frame = features("consumer", spine, inputs("consumer", events, ["C1"]))
    assert frame["last_balance"].to_list() == [500.0, 80.0]
    # 80 closes 6-30, but the month's typical outflow is 50 * 30 / 90: not low relative to it.
    assert frame["low_balance_days_30d"].to_list() == [0, 0]


@pytest.mark.parametrize("scale", [1.0, 25.0])
def test_low_balance_is_relative_to_the_consumers_own_outflow(scale: float) -> None:
    """A day is low below a quarter of the average monthly outflow of the 90 days up to it.

    The same log at 25 times the amounts (another currency) gives the same days.
    """
    rows = [
        ("C1", D(2024, 5, 1, 9), "bill_payment", 3000.0, None, 1000.0),
        ("C1", D(2024, 6, 10, 9), "purchase", 600.0, "M1", 400.0),  # 3600/3 -> 300: not low
        ("C1", D(2024, 6, 20, 9), "purchase", 150.0, "M1", 250.0),  # 3750/3 -> 312.5: low
        ("C1", D(2024, 6, 25, 9), "income", 5000.0, None, 5250.0),
        ("C1", D(2024, 6, 28, 9), "transfer_out", 5400.0, "C9", -150.0),  # negative: low
        # 90 days up to 8-29 start on 6-1: the 3000 of 5-1 is out of the span, so the typical
        # outflow is 6160 / 3 and 600 is over a quarter of it (with 5-1 in, it would be low).
        ("C1", D(2024, 8, 29, 9), "purchase", 10.0, "M1", 600.0),
    ]
    events = consumer_events(
        [(e, t, k, a * scale, c, None if b is None else b * scale) for e, t, k, a, c, b in rows]
    )
    spine = pl.DataFrame(
        {"entity_id": ["C1", "C1"], "as_of": [dt.date(2024, 7, 1), dt.date(2024, 8, 30)]}
    )
    frame = features("consumer", spine, inputs("consumer", events, ["C1"]))
    assert frame["low_balance_days_30d"].to_list() == [2, 0]
    assert frame["low_balance_days_90d"].to_list() == [2, 2]
