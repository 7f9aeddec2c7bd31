"""Recourse: every suggestion, applied, reaches the cut-off and touches only actionable features.

A small monotone model is trained on features of every kind: actionable ones (a refund rate, a
balance floor, arrears), facts the entity cannot change (tenure, age, its counterparties, past
defaults), one actionable but unconstrained, one the caller calls protected. The facts carry
much of the signal, so a search that strayed into them would be caught.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.catalog import FeatureSpec
from models.calibrate import fit_calibrator
from models.limits import LimitPolicy
from models.recourse import CHANGE, QUANTILES, STATUSES, recourse
from models.scaling import ScalingParams
from models.scorer import Scorer
from models.train import TrainParams, lgb_params


def _spec(name: str, dimension: str, monotone: int, window: int | None, actionable: bool):
    return FeatureSpec(
        name=name,
        segment="merchant",
        dimension=dimension,
        window_days=window,
        monotone=monotone,
        description=f"the {name.replace('_', ' ')}",
        reason=f"poor {name.replace('_', ' ')}",
        actionable=actionable,
    )


SPECS = (
    _spec("refund_rate_90d", "ability_to_pay", -1, 90, True),
    _spec("balance_floor_30d", "ability_to_pay", 1, 30, True),
    _spec("days_past_due_now", "credit_history", -1, None, True),
    _spec("sales_count_90d", "behaviour", 1, 90, True),
    _spec("night_share_90d", "behaviour", 0, 90, True),  # actionable, but no direction
    _spec("spend_share_90d", "behaviour", -1, 90, True),  # protected by the caller below
    _spec("tenure_days", "identity", 1, None, False),
    _spec("age_years", "identity", 1, None, False),
    _spec("risky_buyer_share_ever", "connections", -1, None, False),
    _spec("prior_defaults", "credit_history", -1, None, False),
)
NAMES = [s.name for s in SPECS]
WEIGHTS = np.array([1.0, -0.8, 0.03, -0.5, 0.3, 0.6, -0.9, -0.7, 1.1, 1.0])  # on the log-odds
PROTECTED = {"spend_share_90d"}
ALLOWED = {"refund_rate_90d", "balance_floor_30d", "days_past_due_now", "sales_count_90d"}
POLICY = LimitPolicy(
    product_cap=5_000_000,
    band_multiples={"poor": 0, "fair": 1, "good": 2, "very_good": 3, "excellent": 4},
    expected_loss_budget=5000,
)


def _frame(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.beta(1, 12, rows),  # refund rate
            rng.lognormal(7, 1.2, rows).round(2),  # balance floor
            np.where(rng.random(rows) < 0.1, rng.integers(1, 60, rows), 0),  # arrears
            rng.poisson(40, rows),  # sales count
            rng.random(rows),  # night share
            rng.random(rows),  # spend share
            rng.integers(30, 3000, rows),  # tenure
            rng.integers(18, 80, rows),  # age
            rng.beta(1, 8, rows),  # risky buyers
            rng.poisson(0.3, rows),  # past defaults
        ]
    ).astype(float)
    x[rng.random(rows) < 0.05, 1] = np.nan  # a balance not always known
    z = (np.nan_to_num(x) - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(-2.5 + z @ WEIGHTS)))).astype(int)
    inflow = rng.lognormal(9, 1, rows)
    frame = pl.DataFrame({n: x[:, j] for j, n in enumerate(NAMES)}).with_columns(
        pl.Series("entity_id", [f"m{seed}-{i}" for i in range(rows)]),
        pl.lit(dt.date(2026, 1, 1)).alias("as_of"),
        pl.Series("monthly_inflow", inflow),
        pl.Series("monthly_free_cash_flow", inflow * 0.2),
        pl.col("days_past_due_now").alias("current_dpd"),
    )
    return frame, y


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    frame, y = _frame(6000, seed=0)
    x = frame.select(NAMES).to_numpy()
    params = lgb_params(
        TrainParams(num_leaves=7, min_data_in_leaf=40, num_threads=1),
        [s.pd_monotone for s in SPECS],
    )
    booster = lgb.train(params, lgb.Dataset(x[:4500], y[:4500], feature_name=NAMES), 80)
    calibrator = fit_calibrator(booster.predict(x[4500:], raw_score=True), y[4500:], "platt")
    return Scorer("merchant", SPECS, booster, calibrator, ScalingParams(), POLICY)


@pytest.fixture(scope="module")
def book() -> pl.DataFrame:
    return _frame(1500, seed=1)[0]


@pytest.fixture(scope="module")
def cutoff(scorer: Scorer, book: pl.DataFrame) -> int:
    """A cut-off declining about 40% of the book."""
    return int(np.percentile(scorer.score(book, reasons=False)["score"], 40))


@pytest.fixture(scope="module")
def found(scorer: Scorer, book: pl.DataFrame, cutoff: int) -> pl.DataFrame:
    return recourse(scorer, book, cutoff, protected=PROTECTED)


def _changes(found: pl.DataFrame) -> pl.DataFrame:
    return (
        found.explode("recourse_changes").drop_nulls("recourse_changes").unnest("recourse_changes")
    )


def _applied(book: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """Each option applied to its entity's row: one row per (entity, option)."""
    wide = changes.pivot(on="feature", index=["entity_id", "option"], values="target")
    rows = wide.join(book, on="entity_id", how="left", suffix="__book")
    return rows.with_columns(
        pl.coalesce(pl.col(n), pl.col(f"{n}__book")).alias(n) for n in NAMES if n in wide.columns
    )


def test_every_suggestion_applied_reaches_the_cutoff(scorer, book, cutoff, found) -> None:
    changes = _changes(found)
    assert changes.height > 100
    options = _applied(book, changes)
    rescored = scorer.score(options, reasons=False)
    assert (rescored["score"] >= cutoff).all()
    # the score the suggestion reports is the one the Scorer gives
    reported = changes.group_by("entity_id", "option").agg(pl.col("score_after").first())
    both = (
        options.select("entity_id", "option")
        .with_columns(rescored["score"])
        .join(reported, on=["entity_id", "option"])
    )
    assert (both["score"] == both["score_after"]).all()


def test_suggestions_touch_only_actionable_constrained_features(found, book) -> None:
    changes = _changes(found)
    assert set(changes["feature"]) <= ALLOWED
    assert len(set(changes["feature"])) >= 2
    direction = {s.name: s.monotone for s in SPECS}
    moved = changes.with_columns(
        pl.col("feature").replace_strict(direction, return_dtype=pl.Int64).alias("d")
    )
    # each moves in its score-raising direction, to a value seen in the book
    assert ((moved["target"] - moved["current"]) * moved["d"] > 0).all()
    for name, targets in moved.group_by("feature").agg("target").iter_rows():
        assert set(targets) <= set(book[name].drop_nulls())


def test_an_entity_above_the_cutoff_gets_none(scorer, book, cutoff, found) -> None:
    score = scorer.score(book, reasons=False)["score"]
    arrears = book["current_dpd"] >= POLICY.knockout_dpd
    above = found.filter((score >= cutoff) & ~arrears)
    assert above.height > 0
    assert (above["recourse_status"] == "above_cutoff").all()
    assert above["recourse"].is_null().all()
    assert (above["recourse_changes"].list.len() == 0).all()
    below = found.filter(score < cutoff)
    assert set(below["recourse_status"]) <= {"change", "out_of_reach"}
    assert below["recourse"].is_not_null().all()


def test_arrears_past_the_knockout_are_named_whatever_the_score(scorer, book, cutoff, found):
    decided = scorer.score(book, reasons=False).select("score", "binding_constraint")
    rows = pl.concat([found, decided], how="horizontal")
    knocked = rows.filter(pl.col("binding_constraint") == "knockout_delinquent")
    assert knocked.height > 0
    assert knocked["recourse"].str.contains("past due now, and the policy declines from 30").all()
    assert knocked["recourse"].str.contains("clear the arrears").all()
    above = knocked.filter(pl.col("score") >= cutoff)
    assert above.height > 0
    assert (above["recourse_status"] == "knocked_out").all()
    assert (above["recourse_changes"].list.len() == 0).all()
    below = knocked.filter(pl.col("score") < cutoff)
    assert set(below["recourse_status"]) <= {"change", "out_of_reach"}
    others = rows.filter(pl.col("binding_constraint") != "knockout_delinquent")
    assert not others["recourse"].str.contains("clear the arrears").any()


def test_the_frame_has_one_row_per_entity_and_its_schema(book, found) -> None:
    assert found["entity_id"].to_list() == book["entity_id"].to_list()
    assert dict(found.schema) == {
        "entity_id": pl.String,
        "as_of": pl.Date,
        "recourse_status": pl.String,
        "recourse": pl.String,
        "recourse_changes": pl.List(CHANGE),
    }
    assert set(found["recourse_status"]) <= set(STATUSES)


def test_single_changes_are_the_least_grid_step_that_reaches(scorer, book, cutoff, found) -> None:
    changes = _changes(found)
    singles = changes.filter(pl.len().over("entity_id", "option") == 1)
    assert singles.height > 50
    checked = 0
    for name in ALLOWED & set(singles["feature"]):
        spec = SPECS[NAMES.index(name)]
        levels = np.unique(
            np.quantile(book[name].drop_nulls().to_numpy(), QUANTILES, method="inverted_cdf")
        )
        chosen = singles.filter(pl.col("feature") == name)
        # one grid step less favourable than the target, still an improvement, falls short
        ranked = levels * spec.monotone
        at = np.searchsorted(np.sort(ranked), chosen["target"].to_numpy() * spec.monotone)
        prior = np.sort(ranked)[np.maximum(at - 1, 0)] * spec.monotone
        still_better = (at > 0) & ((prior - chosen["current"].to_numpy()) * spec.monotone > 0)
        back = _applied(book, chosen.with_columns(pl.Series("target", prior)).filter(still_better))
        assert (scorer.score(back, reasons=False)["score"] < cutoff).all(), name
        checked += back.height
    assert checked > 50


def test_two_features_only_when_no_single_one_reaches(scorer, book) -> None:
    high = int(np.percentile(scorer.score(book, reasons=False)["score"], 80))
    found = recourse(scorer, book, high, protected=PROTECTED)
    changes = _changes(found)
    pairs = changes.filter(pl.len().over("entity_id", "option") == 2)
    assert pairs.height > 0
    paired = set(pairs["entity_id"])
    # such an entity has no one-feature option, and no allowed feature alone at its most
    # favourable book level (95th or 5th percentile) reaches the cut-off
    assert (
        changes.filter(pl.col("entity_id").is_in(paired))
        .group_by("entity_id", "option")
        .len()["len"]
        .min()
        == 2
    )
    rows = book.filter(pl.col("entity_id").is_in(paired))
    for name in ALLOWED:
        spec = SPECS[NAMES.index(name)]
        best = float(np.quantile(book[name].drop_nulls(), 0.95 if spec.monotone > 0 else 0.05,
                                 method="inverted_cdf"))  # fmt: skip
        moved = rows.with_columns(
            pl.when((pl.col(name) - best) * spec.monotone < 0).then(best).otherwise(pl.col(name))
            .alias(name)
        )  # fmt: skip
        assert (scorer.score(moved, reasons=False)["score"] < high).all(), name


def test_out_of_reach_is_said_not_left_blank(scorer, book) -> None:
    found = recourse(scorer, book, 900, protected=PROTECTED)
    lost = found.filter(pl.col("recourse_status") == "out_of_reach")
    assert lost.height > 0
    assert lost["recourse"].str.contains("no change within reach").all()
    assert lost["recourse"].str.contains("cut-off 900").all()
    # a model whose features the entity controls none of: nothing to suggest, and it says so
    frozen = replace(scorer, specs=tuple(replace(s, actionable=False) for s in SPECS))
    none = recourse(frozen, book, 700)
    below = none.filter(scorer.score(book, reasons=False)["score"] < 700)
    assert (below["recourse_status"] == "out_of_reach").all()
    assert below["recourse"].str.contains("no feature the merchant controls").all()


def test_identity_connections_and_protected_are_never_suggested(scorer, book, cutoff) -> None:
    # even a saved spec that wrongly calls identity and connections actionable cannot lead
    # recourse to them; a protected name is skipped whatever the catalog says
    wrong = replace(
        scorer,
        specs=tuple(
            replace(s, actionable=True) if s.dimension in ("identity", "connections") else s
            for s in SPECS
        ),
    )
    changes = _changes(recourse(wrong, book, cutoff, protected=PROTECTED))
    assert set(changes["feature"]) <= ALLOWED
    freed = _changes(recourse(scorer, book, cutoff))
    assert "spend_share_90d" in set(freed["feature"])  # it would be suggested if not protected


def test_plain_text_names_the_reason_and_target(found) -> None:
    changes = _changes(found).join(found.select("entity_id", "recourse"), on="entity_id")
    assert changes.height
    for row in changes.iter_rows(named=True):
        spec = SPECS[NAMES.index(row["feature"])]
        assert f"{spec.reason} ({spec.code}):" in row["recourse"]
        if spec.window_days is not None:
            assert f"for {spec.window_days} days" in row["recourse"]
    rates = changes.filter(pl.col("feature") == "refund_rate_90d").row(0, named=True)
    assert f"at or below {rates['target'] * 100:.1f}% for 90 days" in rates["recourse"]
    arrears = changes.filter(pl.col("feature") == "days_past_due_now")
    if arrears.height:
        row = arrears.row(0, named=True)
        assert f"bring it down to {row['target']:.0f} or less" in row["recourse"]


def test_at_most_k_options_cheapest_first(scorer, book, cutoff) -> None:
    for k in (1, 2):
        changes = _changes(recourse(scorer, book, cutoff, max_suggestions=k, protected=PROTECTED))
        assert changes["option"].max() <= k
    many = _changes(recourse(scorer, book, cutoff, max_suggestions=4, protected=PROTECTED))
    assert many["option"].max() > 2


def test_deterministic_and_independent_of_row_order(scorer, book, cutoff, found) -> None:
    assert_frame_equal(recourse(scorer, book, cutoff, protected=PROTECTED), found)
    shuffled = book.sample(fraction=1.0, shuffle=True, seed=3)
    again = recourse(scorer, shuffled, cutoff, protected=PROTECTED)
    assert_frame_equal(again.sort("entity_id"), found.sort("entity_id"))
    assert_frame_equal(book, _frame(1500, seed=1)[0])  # the input is left as it was


def test_bad_input_is_refused_in_one_line(scorer, book) -> None:
    with pytest.raises(ValueError, match="cut-off"):
        recourse(scorer, book, 200)
    with pytest.raises(ValueError, match="entity_id"):
        recourse(scorer, book.drop("entity_id"), 600)
    with pytest.raises(ValueError, match="refund_rate_90d"):
        recourse(scorer, book.drop("refund_rate_90d"), 600)
    with pytest.raises(ValueError, match="max_suggestions"):
        recourse(scorer, book, 600, max_suggestions=0)
    with pytest.raises(ValueError, match="quantiles"):
        recourse(scorer, book, 600, quantiles=(0.0, 1.0))


def test_the_trees_of_the_changed_features_give_the_whole_models_change(scorer, book) -> None:
    from models.recourse import _Trees

    x = scorer.matrix(book)
    trees = _Trees(scorer.booster)
    assert trees.cut
    for j in range(len(NAMES)):
        changed = x.copy()
        changed[:, j] = np.nanquantile(x[:, j], 0.9)
        whole = scorer.booster.predict(changed, raw_score=True)
        whole = whole - scorer.booster.predict(x, raw_score=True)
        sub = trees.of(frozenset({j}))
        part = 0.0 if sub is None else sub.predict(changed, raw_score=True)
        part = part - (0.0 if sub is None else sub.predict(x, raw_score=True))
        np.testing.assert_allclose(part, whole, rtol=0, atol=1e-9)
    both = trees.of(frozenset({0, 1}))
    assert both is not None
    assert both.num_trees() == sum(bool(used & {0, 1}) for used in trees.uses)
    assert both.num_trees() < scorer.booster.num_trees()
