"""The out-of-time split: slices by issue month, never sharing one."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from models.split import (
    TEST,
    TRAIN,
    VALID,
    SplitParams,
    assign_slices,
    complete_months,
    slice_months,
)


def _frame(months: int = 12, per_month: int = 5) -> pl.DataFrame:
    days = [
        dt.date(2023 + (m // 12), m % 12 + 1, 1 + d * 5)
        for m in range(months)
        for d in range(per_month)
    ]
    return pl.DataFrame({"as_of": days}).with_columns(
        pl.col("as_of").dt.strftime("%Y-%m").alias("issue_month")
    )


def test_latest_months_are_test_then_valid_then_train() -> None:
    frame = _frame()
    months = frame["issue_month"].unique().to_list()
    params = SplitParams(test_months=3, valid_months=2)
    out = frame.with_columns(assign_slices(pl.col("as_of"), months, params).alias("slice"))
    per_month = out.group_by("issue_month").agg(pl.col("slice").unique()).sort("issue_month")
    # No issue month is in two slices.
    assert (per_month["slice"].list.len() == 1).all()
    slices = per_month["slice"].list.first().to_list()
    assert slices == [TRAIN] * 7 + [VALID] * 2 + [TEST] * 3
    # Every training month precedes every validation month, which precede every test month.
    last = out.group_by("slice").agg(pl.col("as_of").min().alias("lo"), pl.col("as_of").max())
    bounds = {r["slice"]: (r["lo"], r["as_of"]) for r in last.to_dicts()}
    assert bounds[TRAIN][1] < bounds[VALID][0]
    assert bounds[VALID][1] < bounds[TEST][0]


def test_train_months_limits_history_and_drops_older_months() -> None:
    frame = _frame()
    months = frame["issue_month"].unique().to_list()
    params = SplitParams(test_months=2, valid_months=2, train_months=3)
    assert slice_months(months, params) == {
        TRAIN: ["2023-06", "2023-07", "2023-08"],
        VALID: ["2023-09", "2023-10"],
        TEST: ["2023-11", "2023-12"],
    }
    out = frame.with_columns(assign_slices(pl.col("as_of"), months, params).alias("slice"))
    assert out.filter(pl.col("slice").is_null())["issue_month"].unique().sort().to_list() == [
        f"2023-0{m}" for m in range(1, 6)
    ]


def test_too_few_months_is_refused() -> None:
    with pytest.raises(ValueError, match="expected at least 7 labelled issue months"):
        slice_months(["2024-01", "2024-02"], SplitParams(test_months=3, valid_months=3))


def test_only_months_whose_every_loan_is_labelled_count() -> None:
    """The latest month with labels is a stub (early-month loans only): it is left out."""
    issue_month = pl.Series(["2024-01", "2024-01", "2024-02", "2024-02", "2024-03"])
    labelled = pl.Series([True, True, True, False, False])
    assert complete_months(issue_month, labelled) == ["2024-01"]
    assert complete_months(pl.Series([], dtype=pl.String), pl.Series([], dtype=pl.Boolean)) == []
