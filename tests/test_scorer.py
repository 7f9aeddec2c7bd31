"""The Scorer: one decision per row, fast and exact attribution, save and load."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from features.catalog import DIMENSIONS, FeatureSpec
from models.attribution import PathAttribution
from models.calibrate import Calibrator, fit_calibrator
from models.limits import CONSTRAINTS, KNOCKOUTS, LimitPolicy
from models.pricing import PricingPolicy, break_even_apr
from models.reasons import reason_text
from models.scaling import ScalingParams
from models.scorer import Scorer
from models.train import TrainParams, lgb_params

SPECS = tuple(
    FeatureSpec(
        name=f"x{i}",
        segment="consumer",
        dimension=DIMENSIONS[i % len(DIMENSIONS)],
        window_days=30,
        monotone=-1 if i == 0 else (1 if i == 1 else 0),
        description=f"feature {i}",
        reason=f"reason {i}",
    )
    for i in range(7)
)
NAMES = [s.name for s in SPECS]
POLICY = LimitPolicy(
    product_cap=200_000,
    band_multiples={"poor": 0, "fair": 1, "good": 1.5, "very_good": 2, "excellent": 3},
    annual_interest_rate=0.18,
    lgd=0.7,
    expected_loss_budget=800,
)
SUBS = [f"sub_{d}" for d in DIMENSIONS]
REASONS = [f"reason_{i}" for i in range(1, 5)]


def _frame(rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(SPECS)))
    x[rng.random(x.shape) < 0.05] = np.nan
    f = np.nan_to_num(x)
    logit = -3 + 1.2 * f[:, 0] - 0.8 * f[:, 1] + 0.4 * f[:, 2] * f[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    inflow = rng.lognormal(8, 1, rows)
    frame = pl.DataFrame({n: x[:, i] for i, n in enumerate(NAMES)}).with_columns(
        pl.Series("entity_id", [f"c{i}" for i in range(rows)]),
        pl.lit(dt.date(2025, 1, 1)).alias("as_of"),
        pl.Series("monthly_inflow", inflow),
        pl.Series("monthly_free_cash_flow", inflow * 0.3),
        pl.Series("current_dpd", np.where(rng.random(rows) < 0.05, 45.0, 0.0)),
    )
    return frame, y


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    frame, y = _frame(4000, seed=0)
    x = frame.select(NAMES).to_numpy()
    params = lgb_params(
        TrainParams(num_leaves=15, min_data_in_leaf=30, num_threads=1),
        [s.pd_monotone for s in SPECS],
    )
    train = lgb.Dataset(x[:3000], y[:3000], feature_name=NAMES)
    booster = lgb.train(params, train, num_boost_round=40)
    calibrator = fit_calibrator(booster.predict(x[3000:], raw_score=True), y[3000:], "isotonic")
    return Scorer("consumer", SPECS, booster, calibrator, ScalingParams(), POLICY)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return _frame(500, seed=1)[0]


def test_one_decision_per_row_with_the_contract_columns(scorer: Scorer, frame) -> None:
    out = scorer.score(frame)
    assert out.height == frame.height
    assert out["entity_id"].to_list() == frame["entity_id"].to_list()
    expected = {
        "entity_id": pl.String,
        "as_of": pl.Date,
        "segment": pl.String,
        "pd": pl.Float64,
        "score": pl.Int32,
        "band": pl.String,
        "limit": pl.Float64,
        "binding_constraint": pl.String,
        "apr": pl.Float64,
        "priced_out": pl.Boolean,
        **dict.fromkeys(REASONS, pl.String),
        **dict.fromkeys(SUBS, pl.Float64),
    }
    assert dict(out.schema) == expected
    assert out["score"].is_between(350, 950).all()
    assert set(out["binding_constraint"]) <= set(CONSTRAINTS) | set(KNOCKOUTS)
    assert (out.filter(pl.col("binding_constraint").is_in(list(KNOCKOUTS)))["limit"] == 0).all()
    assert out.filter(pl.col("score") >= 550)["limit"].max() > 0
    assert (out["limit"] <= POLICY.product_cap).all()
    delinquent = frame["current_dpd"] >= 30
    assert (out.filter(delinquent)["binding_constraint"] == "knockout_delinquent").all()


def test_reasons_name_adverse_catalog_features(scorer: Scorer, frame) -> None:
    out = scorer.score(frame)
    contrib = scorer.contributions(frame)
    text = {reason_text(s): i for i, s in enumerate(SPECS)}
    floor = scorer.scaling.reason_min_points / scorer.scaling.factor
    for row, reasons in zip(contrib, out.select(REASONS).rows(), strict=True):
        named = [r for r in reasons if r is not None]
        assert all(row[text[r]] > floor for r in named)
    assert out["reason_1"].null_count() < out.height


def test_sub_scores_share_out_the_move_from_the_average_applicant(scorer: Scorer, frame) -> None:
    out = scorer.score(frame)
    total = out.select(pl.sum_horizontal(SUBS)).to_series().to_numpy()
    raw = scorer.booster.predict(scorer.matrix(frame), raw_score=True)
    moved = -scorer.points_per_log_odds * (raw - scorer.expected_raw)
    assert np.abs(total - moved).max() <= 0.05 * len(SUBS) + 1e-9  # each is rounded to 0.1
    assert np.corrcoef(total, out["score"].to_numpy() - scorer.baseline_score)[0, 1] > 0.8
    assert 350 <= scorer.baseline_score <= 950


def test_with_platt_calibration_sub_scores_add_up_to_the_score(scorer: Scorer, frame) -> None:
    platt = Calibrator("platt", a=0.8, b=-0.3)
    model = Scorer("consumer", SPECS, scorer.booster, platt, scorer.scaling, POLICY)
    out = model.score(frame)
    total = out.select(pl.sum_horizontal(SUBS)).to_series().to_numpy()
    inside = out["score"].is_between(351, 949).to_numpy()
    gap = total - (out["score"].to_numpy() - model.baseline_score)
    assert np.abs(gap[inside]).max() <= 1.0 + 0.05 * len(SUBS)  # two integer roundings


def test_fast_and_exact_make_the_same_decision(scorer: Scorer, frame) -> None:
    fast = scorer.score(frame, attribution="fast")
    exact = scorer.score(frame, attribution="exact")
    decision = ["pd", "score", "band", "limit", "binding_constraint"]
    assert fast.select(decision).equals(exact.select(decision))
    assert (fast["reason_1"] == exact["reason_1"]).mean() > 0.7
    assert scorer.score(frame, reasons=False).columns == fast.columns[: -len(REASONS + SUBS)]


def test_consent_knocks_out(scorer: Scorer, frame) -> None:
    consent = pl.Series("consent", [i % 3 != 0 for i in range(frame.height)])
    out = scorer.score(frame.with_columns(consent).with_columns(pl.col("consent").cast(pl.Boolean)))
    refused = out.filter(~consent)
    assert (refused["binding_constraint"] == "knockout_no_consent").all()
    assert (refused["limit"] == 0).all()


def test_save_and_load_reproduce_every_column(scorer: Scorer, frame, tmp_path: Path) -> None:
    scorer.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["booster.txt", "scorer.json"]
    again = Scorer.load(tmp_path / "model")
    assert again.scaling == scorer.scaling
    assert again.policy == scorer.policy
    assert again.score(frame).equals(scorer.score(frame))


def test_edges_are_refused(scorer: Scorer, frame) -> None:
    with pytest.raises(ValueError, match="expected attribution"):
        scorer.score(frame, attribution="shap")
    with pytest.raises(ValueError, match="missing"):
        scorer.score(frame.drop("monthly_inflow"))
    bad_policy = POLICY.model_copy(update={"band_multiples": {"poor": 0.0}})
    with pytest.raises(ValueError, match="expected band multiples"):
        Scorer("consumer", SPECS, scorer.booster, scorer.calibrator, scorer.scaling, bad_policy)
    with pytest.raises(ValueError, match="expected the booster's features"):
        Scorer("consumer", SPECS[:3], scorer.booster, scorer.calibrator, scorer.scaling, POLICY)
    assert scorer.score(frame.head(0)).height == 0


def test_strategy_table_from_the_scorer_uses_limits_if_approved(scorer: Scorer, frame) -> None:
    from models.strategy import scorer_cutoff_table

    bad = (np.arange(frame.height) % 10 == 0).astype(int)
    table = scorer_cutoff_table(scorer, frame, bad, cutoffs=[350, 550])
    out = scorer.score(frame, reasons=False)
    assert table["approved"].to_list() == [frame.height, int((out["score"] >= 550).sum())]
    assert table["total_limit"][1] == pytest.approx(out["limit"].sum())
    assert table["total_limit"][0] >= table["total_limit"][1]


@pytest.mark.slow
def test_the_scores_contract_carries_sub_scores_and_reasons(trained_world) -> None:
    from registry_world import scoring_date

    from pipeline.stages import score
    from pipeline.storage import Layout

    layout = Layout(trained_world.data_dir)
    for segment in ("merchant", "consumer"):
        score.run(trained_world, segment)
        folder = layout.scores(segment, scoring_date(trained_world))
        scores = pl.read_parquet(folder / "scores.parquet")
        for column in [*REASONS, *SUBS]:
            assert column in scores.columns, column
        assert all(scores.schema[c] == pl.Float64 for c in SUBS)
        named = scores.select(pl.concat_list(REASONS).list.drop_nulls().explode()).to_series()
        codes = {reason_text(s) for s in Scorer.load(layout.model(segment)).specs}
        assert set(named.drop_nulls()) <= codes


def test_every_decision_carries_its_price(scorer: Scorer, frame) -> None:
    out = scorer.score(frame)
    pricing = POLICY.pricing
    assert out["priced_out"].to_list() == out["apr"].is_null().to_list()
    priced = out.filter(~pl.col("priced_out"))
    assert priced.height > 0
    assert (priced["apr"] <= pricing.max_apr).all()
    floor = break_even_apr(
        priced["pd"].to_numpy(), lgd=POLICY.lgd, term_months=POLICY.term_months, policy=pricing
    )
    assert (priced["apr"].to_numpy() >= floor - 1e-12).all()
    by_pd = priced.sort("pd")["apr"]
    assert (by_pd.diff().drop_nulls() >= 0).all()  # a riskier entity never pays less


def test_a_priced_out_entity_gets_no_price_and_no_limit(scorer: Scorer, frame) -> None:
    # a ceiling just above the bare costs prices out all but the safest entities
    tight = PricingPolicy(cost_of_funds=0.05, operating_cost=0.02, target_margin=0.0, max_apr=0.08)
    policy = POLICY.model_copy(update={"pricing": tight, "approval_cutoff": 350})
    model = Scorer("consumer", SPECS, scorer.booster, scorer.calibrator, scorer.scaling, policy)
    out = model.score(frame.drop("current_dpd").with_columns(pl.lit(0.0).alias("current_dpd")))
    floor = break_even_apr(
        out["pd"].to_numpy(), lgd=policy.lgd, term_months=policy.term_months, policy=tight
    )
    assert out["priced_out"].to_list() == (floor > tight.max_apr).tolist()
    assert 0 < out["priced_out"].sum() < out.height
    out_ = out.filter("priced_out")
    assert (out_["limit"] == 0).all()
    assert (out_["binding_constraint"] == "priced_out").all()
    assert out_["apr"].null_count() == out_.height


def test_compiled_inference_gives_the_same_decisions_and_is_cached(
    scorer: Scorer, frame, tmp_path: Path
) -> None:
    cache = tmp_path / "compiled"
    x = scorer.matrix(frame)
    native = scorer.raw_scores(x)
    compiled = scorer.raw_scores(x, compiled=cache)
    # Same trees, same thresholds, same float64 arithmetic; only the order in which the trees'
    # outputs are summed may differ: a few ulps of a log-odds around 1, so 1e-12 is tight.
    np.testing.assert_allclose(compiled, native, rtol=1e-12, atol=1e-12)
    (folder,) = cache.iterdir()  # one folder per model
    assert (folder / "predict.bin").exists()
    again = Scorer.load(_saved(scorer, tmp_path / "model"))
    fast, slow = again.score(frame, compiled=cache), scorer.score(frame)
    np.testing.assert_allclose(fast["pd"], slow["pd"], rtol=1e-12)
    decisions = ["score", "band", "limit", "binding_constraint", "apr", "priced_out"]
    assert fast.select(decisions).equals(slow.select(decisions))
    assert fast.select(REASONS).equals(slow.select(REASONS))
    np.testing.assert_allclose(fast.select(SUBS).to_numpy(), slow.select(SUBS).to_numpy())
    stamp = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert {p.name for p in stamp} >= {"predict.bin", "predict.txt"}
    assert again.score(frame, compiled=cache).equals(fast)
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # loaded, not rebuilt
    other = lgb.Booster(model_str=scorer.booster.model_to_string(num_iteration=10))
    smaller = Scorer("consumer", SPECS, other, scorer.calibrator, scorer.scaling, POLICY)
    np.testing.assert_allclose(
        smaller.raw_scores(x, compiled=cache), other.predict(x, raw_score=True), rtol=1e-12
    )
    assert len(list(cache.iterdir())) == 2  # a changed model never reuses another's binary


def _saved(scorer: Scorer, folder: Path) -> Path:
    scorer.save(folder)
    return folder


def _reference_reasons(contrib: np.ndarray, floor: float) -> list[list[str | None]]:
    """The implementation before vectorising: a stable sort of every row, strings per row."""
    f = contrib[:, : len(SPECS)]
    labels = np.array([reason_text(s) for s in SPECS] + [None], dtype=object)
    order = np.argsort(-f, axis=1, kind="stable")[:, :4]
    adverse = np.take_along_axis(f, order, axis=1) > floor
    return labels[np.where(adverse, order, len(SPECS))].tolist()


def test_vectorised_reasons_are_the_reasons_of_before(scorer: Scorer, frame) -> None:
    out = scorer.score(frame)
    x = scorer.matrix(frame)
    paths = PathAttribution.from_booster(scorer.booster)
    sparse_only = PathAttribution(
        paths.n_features, paths.leaf_offsets, paths.table, paths.expected_value
    )
    before = sparse_only.contributions(scorer.booster, x)  # the sparse product of before
    np.testing.assert_allclose(scorer.contributions(frame), before, rtol=0, atol=1e-12)
    floor = scorer.scaling.reason_min_points / scorer.scaling.factor
    assert out.select(REASONS).rows() == [tuple(r) for r in _reference_reasons(before, floor)]
    dims = np.array([s.dimension for s in SPECS])
    for d in DIMENSIONS:
        want = np.round(-scorer.points_per_log_odds * before[:, :-1][:, dims == d].sum(1), 1)
        np.testing.assert_allclose(out[f"sub_{d}"].to_numpy(), want, atol=0.1 + 1e-9)


def test_explaining_in_chunks_changes_nothing(scorer: Scorer, frame, monkeypatch) -> None:
    whole = scorer.score(frame)
    monkeypatch.setattr("models.scorer.EXPLAIN_CHUNK", 64)  # 500 rows: 8 chunks, a ragged end
    assert scorer.score(frame).equals(whole)
