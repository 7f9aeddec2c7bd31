"""The split: out-of-time slices by issue month never share one; cv folds never share an entity."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from models.split import (
    TEST,
    TRAIN,
    VALID,
    SplitParams,
    assign_slices,
    complete_months,
    cv_folds,
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


def _book(entities: int = 120, seed: int = 0) -> tuple[pl.Series, pl.Series]:
    """Loans of ``entities`` borrowers (1-4 loans each), about 15% of borrowers with a bad."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, size=entities)
    entity = np.repeat(np.arange(entities), per)
    risky = rng.random(entities) < 0.15
    bad = risky[entity] & (rng.random(entity.size) < 0.6)
    return pl.Series("entity_id", [f"c{e:04d}" for e in entity]), pl.Series("bad", bad)


def test_cv_folds_are_grouped_by_entity_and_stratified() -> None:
    entity, bad = _book()
    params = SplitParams(mode="cv", folds=5, repeats=3, seed=1)
    folds = cv_folds(entity, bad, params)
    assert folds.shape == (3, entity.len())
    assert set(np.unique(folds)) == set(range(5))
    for assignment in folds:
        frame = pl.DataFrame({"entity_id": entity, "bad": bad, "fold": assignment})
        # No entity in two folds of a repeat.
        assert frame.group_by("entity_id").agg(pl.col("fold").n_unique())["fold"].max() == 1
        # Stratified: entities with a bad (and without) spread evenly, within one per stratum.
        per_entity = frame.group_by("entity_id").agg(pl.col("bad").any(), pl.col("fold").first())
        for has_bad in (True, False):
            counts = np.bincount(
                per_entity.filter(pl.col("bad") == has_bad)["fold"].to_numpy(), minlength=5
            )
            assert counts.max() - counts.min() <= 2  # strata 1 and 2+ bads each within one
    # Repeats draw fresh folds.
    assert (folds[0] != folds[1]).mean() > 0.5


def test_cv_folds_are_deterministic_and_ignore_row_order() -> None:
    entity, bad = _book()
    params = SplitParams(mode="cv", repeats=2, seed=7)
    folds = cv_folds(entity, bad, params)
    np.testing.assert_array_equal(folds, cv_folds(entity, bad, params))
    order = np.random.default_rng(3).permutation(entity.len())
    shuffled = cv_folds(entity.gather(order), bad.gather(order), params)
    np.testing.assert_array_equal(shuffled, folds[:, order])
    other = cv_folds(entity, bad, params.model_copy(update={"seed": 8}))
    assert (other != folds).any()


def test_cv_folds_refuse_a_book_with_too_few_bad_borrowers() -> None:
    entity = pl.Series([f"c{i}" for i in range(50)])
    bad = pl.Series([i < 3 for i in range(50)])
    with pytest.raises(ValueError, match="expected at least 5 entities with a bad loan"):
        cv_folds(entity, bad, SplitParams(mode="cv", folds=5))


def test_cv_mode_puts_every_labelled_loan_in_training_and_needs_no_months() -> None:
    frame = _frame(months=1)
    out = frame.with_columns(
        assign_slices(pl.col("as_of"), ["2023-01"], SplitParams(mode="cv")).alias("slice")
    )
    assert out["slice"].to_list() == [TRAIN] * frame.height
