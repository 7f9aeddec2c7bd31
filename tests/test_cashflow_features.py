"""Cash-flow features: windowed order statistics of the daily balance and flows, by hand.

The daily closing balance is the day's last reported balance, carried over days without events;
a window of w days before as_of covers [as_of - w, as_of). Every expected value below is
counted on a calendar.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features import orderstats
from features.keys import CODE, SHIFT, Snapshots, day_number, entity_codes
from features.orderstats import DailySeries, Request, read
from tests.features_helpers import consumer_events, features, inputs

D = dt.datetime
AS_OF = dt.date(2024, 7, 1)


def _row(rows: list[tuple], as_of: dt.date = AS_OF, entity: str = "C1") -> dict:
    spine = pl.DataFrame({"entity_id": [entity], "as_of": [as_of]})
    frame = features("consumer", spine, inputs("consumer", consumer_events(rows), [entity]))
    return frame.row(0, named=True)


BASE = [
    ("C1", D(2024, 5, 1, 9), "income", 3000.0, "EMP", 1000.0),
    ("C1", D(2024, 6, 10, 9), "purchase", 600.0, "M1", 400.0),
    ("C1", D(2024, 6, 30, 9), "penalty", 15.0, None, -50.0),  # the day before as_of
]


def test_balance_statistics_weigh_each_day_once() -> None:
    """1000 from 5-1 to 6-9 (40 days), 400 from 6-10 to 6-29 (20), -50 on 6-30 (1)."""
    row = _row(BASE)
    # 30 days (6-1 .. 6-30): 1000 carried in for 9 days, 400 for 20, -50 for 1
    assert row["balance_min_30d"] == -50.0
    assert row["balance_max_30d"] == 1000.0
    assert row["balance_p10_30d"] == 400.0  # 3rd smallest day of 30
    assert row["balance_median_30d"] == 400.0  # 15th of 30
    # 90 days (4-2 .. 6-30): no balance before 5-1, so 61 days are known
    assert row["balance_p10_90d"] == 400.0  # 7th of 61
    assert row["balance_median_90d"] == 1000.0  # 31st of 61: -50 once, 400 20 times
    # a negative balance on the day before as_of counts
    assert row["negative_balance_days_30d"] == 1
    assert row["negative_balance_days_365d"] == 1
    assert row["month_end_balance"] == -50.0  # 6-30 is the last month-end before 7-1
    assert row["penalty_count_90d"] == 1
    assert row["fee_count_365d"] == 0
    assert row["worst_day_net_flow_90d"] == -600.0
    assert row["largest_outflow_to_monthly_inflow_90d"] == pytest.approx(600 / (3000 * 30 / 90))


def test_a_negative_balance_on_as_of_is_not_yet_known() -> None:
    """A balance reported on as_of itself is after the boundary (as_of is exclusive)."""
    rows = [*BASE[:2], ("C1", D(2024, 7, 1, 0, 5), "penalty", 15.0, None, -50.0)]
    row = _row(rows)
    assert row["balance_min_30d"] == 400.0
    assert row["negative_balance_days_30d"] == 0
    assert row["penalty_count_90d"] == 0


def test_negative_balance_on_the_window_start_counts_inside() -> None:
    """-5 reported on 4-2 (= as_of - 90) is in the 90-day window, in force until 4-11."""
    rows = [
        ("C1", D(2024, 4, 2, 20), "cash_withdrawal", 100.0, None, -5.0),
        ("C1", D(2024, 4, 12, 9), "income", 105.0, "EMP", 100.0),
    ]
    row = _row(rows)
    assert row["negative_balance_days_90d"] == 10  # 4-2 .. 4-11
    assert row["balance_min_90d"] == -5.0
    # the 30-day window only sees 100 carried in
    assert row["balance_min_30d"] == 100.0
    assert row["negative_balance_days_30d"] == 0
    # one day later the first negative day leaves the 90-day window
    later = _row(rows, as_of=dt.date(2024, 7, 2))
    assert later["negative_balance_days_90d"] == 9
    assert later["balance_min_90d"] == -5.0  # still in force on 4-3


def test_carried_in_balance_fills_a_window_without_events() -> None:
    """A balance reported long before the window is the statement's balance on every day."""
    rows = [("C1", D(2023, 1, 10, 9), "transfer_out", 50.0, "C9", -20.0)]
    row = _row(rows)
    for w in (30, 90, 180, 365):
        assert row[f"balance_min_{w}d"] == -20.0
        assert row[f"balance_median_{w}d"] == -20.0
        assert row[f"negative_balance_days_{w}d"] == w
    # no event in the window: the daily net flow is 0 every day
    assert row["worst_day_net_flow_90d"] == 0.0


def test_windows_without_a_balance_read_null() -> None:
    rows = [("C1", D(2024, 6, 20, 9), "purchase", 50.0, "M1", None)]
    row = _row(rows)
    for name in ("balance_min_90d", "balance_p10_90d", "balance_max_365d"):
        assert row[name] is None, name
    assert row["negative_balance_days_90d"] is None
    assert row["month_end_balance"] is None
    assert row["penalty_count_90d"] == 0


def test_a_single_day() -> None:
    """One balance on the day before as_of: every statistic is that balance, on one day."""
    row = _row([("C1", D(2024, 6, 30, 9), "income", 10.0, "EMP", 70.0)])
    for stat in ("min", "max", "p10", "median"):
        assert row[f"balance_{stat}_30d"] == 70.0, stat
    assert row["negative_balance_days_30d"] == 0
    assert row["worst_day_net_flow_90d"] == 10.0  # the only day in the series


def test_month_end_balances_and_their_trend() -> None:
    """Balances 100, 200, ..., 600 reported mid-month: the month-ends read them carried."""
    rows = [("C1", D(2024, m, 15, 9), "income", 100.0, "EMP", 100.0 * m) for m in range(1, 7)]
    row = _row(rows)
    assert row["month_end_balance"] == 600.0
    assert row["month_end_balance_slope_6m"] == pytest.approx(100.0)
    # three month-ends known (4-30, 5-31, 6-30) as of 7-1 when the first balance is on 4-15
    row = _row(rows[3:])
    assert row["month_end_balance_slope_6m"] == pytest.approx(100.0)
    row = _row(rows[4:])  # two known: too few for a trend
    assert row["month_end_balance_slope_6m"] is None


def test_salary_like_payers_need_every_month_on_a_regular_day() -> None:
    pay = [("C1", D(2024, m, 25 + (m % 2), 9), "income", 3000.0, "EMP", None) for m in range(1, 7)]
    odd = [("C1", D(2024, m, 3 if m % 2 else 20, 9), "transfer_in", 50.0, "MUM", None)
           for m in range(1, 7)]  # fmt: skip
    gap = [("C1", D(2024, m, 10, 9), "transfer_in", 80.0, "SIS", None) for m in (1, 2, 3, 5, 6)]
    interest = [("C1", D(2024, m, 28, 9), "interest_credit", 1.0, "BANK", None)
                for m in range(1, 7)]  # fmt: skip
    row = _row(pay + odd + gap + interest)
    assert row["salary_payers_6m"] == 1  # EMP only: MUM's days move, SIS skipped April
    assert row["salary_payers_3m"] == 1  # SIS: April is missing from April-June
    # the current month is never read: as of 6-26 the months are Dec (none) .. May
    assert _row(pay, as_of=dt.date(2024, 6, 26))["salary_payers_6m"] == 0
    assert _row(pay, as_of=dt.date(2024, 6, 26))["salary_payers_3m"] == 1


def test_cash_share_net_outflow_months_and_inflow_stability() -> None:
    rows = [
        ("C1", D(2024, 6, 20, 9), "income", 1000.0, "EMP", None),
        ("C1", D(2024, 6, 21, 9), "cash_withdrawal", 300.0, None, None),
        ("C1", D(2024, 6, 22, 9), "purchase", 100.0, "M1", None),
        ("C1", D(2024, 5, 20, 9), "income", 1000.0, "EMP", None),
        ("C1", D(2024, 5, 21, 9), "fee", 5.0, None, None),
        ("C1", D(2024, 5, 22, 9), "purchase", 1200.0, "M1", None),
    ]
    row = _row(rows)
    assert row["cash_share_90d"] == pytest.approx(300 / 1605)
    assert row["net_outflow_months_12m"] == 1  # the block of 5-2 .. 5-31
    assert row["inflow_months_12m"] == 2
    blocks = [1000, 1000] + [0] * 10  # one income in each of the last two 30-day blocks
    assert row["inflow_cv_12m"] == pytest.approx(np.std(blocks, ddof=1) / np.mean(blocks))
    assert row["fee_count_90d"] == 1


# --- the order-statistics module against brute force --------------------------------------


def _brute(series_days: dict[int, list[tuple[int, int]]], code: int, stop: int, w: int,
           step: bool) -> list[int]:  # fmt: skip
    """The day-by-day series of the window: one value per day with a value in force."""
    points = series_days.get(code, [])
    days = []
    for day in range(stop - w, stop):
        known = [v for d, v in points if (d <= day if step else d == day)]
        if known:
            days.append(known[-1])
    return days


@pytest.mark.parametrize(("seed", "chunk"), [(0, 4_000_000), (1, 60), (2, 7)])
def test_order_statistics_match_a_day_by_day_count(
    seed: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statistic against the window read day by day, also when the quantiles' gather is
    cut into small chunks of snapshots (one snapshot's entity block may exceed a chunk)."""
    monkeypatch.setattr(orderstats, "QUANTILE_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    entities = ["A", "B", "C", "D"]
    codes = entity_codes(pl.Series(entities))
    start = day_number(pl.lit(dt.date(2023, 1, 1))).cast(pl.Int64)
    first = pl.select(start).item()
    points: dict[int, list[tuple[int, int]]] = {}
    keys, values = [], []
    for code in range(3):  # D has no point at all
        days = sorted(set(rng.integers(first, first + 400, rng.integers(1, 40)).tolist()))
        vals = rng.integers(-500, 2000, len(days)).tolist()
        points[code] = list(zip(days, vals, strict=True))
        keys += [code * SHIFT + d for d in days]
        values += vals
    dates = [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in (0, 5, 90, 200, 399, 420)]
    spine = pl.DataFrame({"entity_id": [e for e in entities for _ in dates], "as_of": dates * 4})
    snaps = Snapshots.of(spine, codes)
    stops = snaps.frame.select(day_number(pl.col("as_of"))).to_series().to_list()
    series = DailySeries(np.array(keys, dtype=np.int64), np.array(values, dtype=np.int64), True)
    for step in (True, False):
        chosen = DailySeries(series.key, series.value, step)
        stats = {}
        for w in (1, 30, 365):
            stats |= {f"min{w}": (w, "min"), f"max{w}": (w, "max"), f"neg{w}": (w, ("below", 0))}
            stats |= {f"p10{w}": (w, Fraction(1, 10)), f"p50{w}": (w, Fraction(1, 2))}
        got = read(snaps, Request(chosen, stats))
        for i, (code, stop) in enumerate(zip(snaps.frame[CODE], stops, strict=True)):
            for w in (1, 30, 365):
                days = sorted(_brute(points, code, stop, w, step))
                if not days:
                    assert all(got[f"{s}{w}"][i] is None for s in ("min", "max", "p10", "neg"))
                    continue
                assert got[f"min{w}"][i] == days[0]
                assert got[f"max{w}"][i] == days[-1]
                assert got[f"neg{w}"][i] == sum(v < 0 for v in days)
                assert got[f"p10{w}"][i] == days[-(-len(days) // 10) - 1]
                assert got[f"p50{w}"][i] == days[-(-len(days) // 2) - 1]


def _brute_floor(series_days: dict[int, list[tuple[int, int]]], code: int, stop: int,
                 w: int) -> int | None:  # fmt: skip
    """The lowest day of the window since the entity's first point, 0 on days without one."""
    points = dict(series_days.get(code, []))
    if not points or min(points) >= stop:
        return None
    return min(points.get(day, 0) for day in range(max(stop - w, min(points)), stop))


def test_floor_with_quiet_days_matches_a_day_by_day_count() -> None:
    """``min0`` of a point series: days without a point read 0, from the entity's first point."""
    entities = ["A", "B", "C"]
    codes = entity_codes(pl.Series(entities))
    first = pl.select(day_number(pl.lit(dt.date(2023, 1, 1)))).item()
    # A: every day from its first, all positive (no quiet day until after its last point);
    # B: sparse, negative and positive days; C: no point at all
    points = {
        0: [(first + d, 5 + d) for d in range(10)],
        1: [(first + 3, -7), (first + 4, 9), (first + 40, 2), (first + 41, -1)],
    }
    keys = [code * SHIFT + d for code in points for d, _ in points[code]]
    values = [v for code in points for _, v in points[code]]
    series = DailySeries(np.array(keys, dtype=np.int64), np.array(values, dtype=np.int64), False)
    dates = [dt.date(2023, 1, 1) + dt.timedelta(days=d) for d in (0, 1, 4, 5, 10, 11, 42, 90)]
    spine = pl.DataFrame({"entity_id": [e for e in entities for _ in dates], "as_of": dates * 3})
    snaps = Snapshots.of(spine, codes)
    stops = snaps.frame.select(day_number(pl.col("as_of"))).to_series().to_list()
    windows = (1, 2, 30)
    got = read(snaps, Request(series, {f"f{w}": (w, "min0") for w in windows}))
    for i, (code, stop) in enumerate(zip(snaps.frame[CODE], stops, strict=True)):
        for w in windows:
            assert got[f"f{w}"][i] == _brute_floor(points, code, stop, w), (code, stop, w)
    with pytest.raises(ValueError, match="point series"):
        read(snaps, Request(DailySeries(series.key, series.value, True), {"f": (30, "min0")}))


def test_keys_must_be_one_per_day() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        DailySeries(np.array([3, 3]), np.array([1, 2]), step=True)


def test_cash_flow_features_are_deterministic_and_equal_one_snapshot_at_a_time() -> None:
    rng = np.random.default_rng(7)
    n = 600
    start = np.datetime64("2023-01-01T00:00:00", "us")
    seconds = rng.integers(0, 560 * 86_400, n).astype("timedelta64[s]")
    kinds = ["income", "purchase", "cash_withdrawal", "penalty", "fee", "transfer_in"]
    rows = list(
        zip(
            [f"C{i}" for i in rng.integers(0, 4, n)],
            (start + seconds).tolist(),
            rng.choice(kinds, n).tolist(),
            np.round(rng.uniform(1, 3000, n), 2).tolist(),
            [None if b < 0 else f"P{b}" for b in rng.integers(-3, 3, n)],
            [None if b < 40 else float(b - 200) for b in rng.integers(0, 900, n)],
            strict=True,
        )
    )
    data = inputs("consumer", consumer_events(rows), [])
    dates = [dt.date(2023, 3, 5), dt.date(2023, 11, 20), dt.date(2024, 6, 1)]
    spine = pl.DataFrame(
        {"entity_id": [f"C{i}" for i in range(5) for _ in dates], "as_of": dates * 5}
    )
    together = features("consumer", spine, data)
    assert_frame_equal(together, features("consumer", spine, data))
    apart = pl.concat([features("consumer", spine.slice(i, 1), data) for i in range(spine.height)])
    assert_frame_equal(together, apart)
    assert together["balance_min_90d"].drop_nulls().len() > 0
    assert together["negative_balance_days_365d"].drop_nulls().sum() > 0
