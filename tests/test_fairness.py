"""Fairness: group metrics by hand, the gate's rule, gender never a feature, a planted bias."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from features_helpers import AS_OF, consumer_events, entities, features, inputs
from features_helpers import PARAMS as FEATURE_PARAMS
from polars.testing import assert_frame_equal

from features.contract import tables as contract
from features.definitions import definitions
from models import fairness
from models.fairness import FairnessParams
from pipeline import fairness as pipeline_fairness
from pipeline.storage import Layout
from world.groups import GENDERS, GroupBias, draw_gender
from world.synth import WorldSpec, generate

PARAMS = FairnessParams(attributes=("gender", "age", "region"), min_group_size=4)


def _book() -> tuple[pl.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Group a: 5 loans, 4 approved (1 bad, declined); b: 5 loans, 2 approved; c: 2 loans."""
    groups = pl.Series(["a"] * 5 + ["b"] * 5 + ["c"] * 2 + [None])
    bad = np.array([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0], dtype=float)
    score = np.array([500, 600, 600, 600, 600, 500, 600, 500, 500, 600, 700, 400, 600])
    pd_ = np.array([0.3, 0.1, 0.1, 0.1, 0.1, 0.3, 0.1, 0.3, 0.3, 0.1, 0.05, 0.5, 0.1])
    return groups, bad, pd_, score


def test_group_rates_and_the_adverse_impact_ratio_by_hand() -> None:
    groups, bad, pd_, score = _book()
    record = fairness.assess({"gender": groups}, bad, pd_, score, 550, PARAMS)
    rec = record["attributes"]["gender"]
    assert rec["status"] == "measured"
    assert rec["unknown"] == 1
    table = {row["group"]: row for row in rec["groups"]}
    assert table["a"]["approval_rate"] == pytest.approx(4 / 5)
    assert table["b"]["approval_rate"] == pytest.approx(2 / 5)
    # approval among goods (TPR) and among bads (FPR)
    assert table["a"]["true_positive_rate"] == pytest.approx(1.0)
    assert table["a"]["false_positive_rate"] == pytest.approx(0.0)
    assert table["b"]["true_positive_rate"] == pytest.approx(1 / 3)
    assert table["b"]["false_positive_rate"] == pytest.approx(1 / 2)
    assert table["a"]["mean_pd"] == pytest.approx(0.14)
    assert table["a"]["bad_rate"] == pytest.approx(0.2)
    # c is reported but too small to judge
    assert table["c"]["loans"] == 2
    assert table["c"]["judged"] is False
    assert rec["judged_groups"] == 2
    assert rec["adverse_impact_ratio"] == pytest.approx((2 / 5) / (4 / 5))
    assert (rec["lowest_group"], rec["highest_group"]) == ("b", "a")
    assert rec["true_positive_rate_gap"] == pytest.approx(1 - 1 / 3)
    assert rec["false_positive_rate_gap"] == pytest.approx(0.5)
    assert rec["calibration_gap"] == pytest.approx(abs(0.22 - 0.4))
    # 0.5 is under the 0.8 limit, but five loans a group cannot show it beyond chance
    assert rec["adverse_impact_upper"] == 1.0
    assert rec["flagged"] is False
    assert record["flagged"] == []
    # the other attributes were not given: absent, not an error
    assert record["attributes"]["age"]["status"] == "absent"
    assert record["attributes"]["region"]["status"] == "absent"


def test_a_disparity_beyond_sampling_noise_is_flagged_and_one_within_it_is_not() -> None:
    # the same rates on 100 times the loans: the upper bound falls under the limit
    groups, bad, pd_, score = _book()
    many = pl.concat([groups] * 100)
    args = (np.tile(bad, 100), np.tile(pd_, 100), np.tile(score, 100), 550, PARAMS)
    rec = fairness.assess({"gender": many}, *args)["attributes"]["gender"]
    assert rec["adverse_impact_ratio"] == pytest.approx(0.5)
    assert rec["adverse_impact_ratio"] < rec["adverse_impact_upper"] < 0.8
    assert rec["flagged"] is True
    # by hand: Katz log bound, half a loan added, z for one pair
    a, b = (200.5 / 501), (400.5 / 501)
    se = math.sqrt((1 - a) / (a * 501) + (1 - b) / (b * 501))
    assert fairness.air_upper_bound(0.4, 500, 0.8, 500, 2) == pytest.approx(
        a / b * math.exp(1.959964 * se), rel=1e-6
    )
    # twelve groups of a hundred drawn alike part by chance: not flagged
    rng = np.random.default_rng(0)
    regions = pl.Series(np.repeat([f"r{i}" for i in range(12)], 100))
    approved = rng.random(1200) < 0.8
    fair = fairness.assess_attribute(
        regions, np.zeros(1200), np.full(1200, 0.05), approved, FairnessParams()
    )
    assert fair["flagged"] is False, fair["adverse_impact_ratio"]


def test_an_attribute_held_for_nobody_is_absent_and_one_judged_group_is_not_judged() -> None:
    _, bad, pd_, score = _book()
    nulls = pl.Series([None] * 13, dtype=pl.String)
    assert fairness.assess_attribute(nulls, bad, pd_, score >= 550, PARAMS)["status"] == "absent"
    one = pl.Series(["a"] * 13)
    rec = fairness.assess_attribute(one, bad, pd_, score >= 550, PARAMS)
    assert rec["adverse_impact_ratio"] is None
    assert rec["flagged"] is False
    assert "fewer than two groups" in rec["note"]


def test_age_bands() -> None:
    frame = pl.DataFrame({"age": [19, 25, 34, 35, 64, 65, 90, None]})
    bands = frame.select(fairness.age_band(pl.col("age"), (25, 35, 65))).to_series().to_list()
    assert bands == ["<25", "25-34", "25-34", "35-64", "35-64", "65+", "65+", None]


def _record(ratios: dict[str, float | None]) -> dict:
    return {
        "cutoff": 550,
        "attributes": {
            a: {"adverse_impact_ratio": r, "lowest_group": "x", "highest_group": "y"}
            for a, r in ratios.items()
        },
    }


def test_the_gate_refuses_below_the_limit_or_worse_than_the_champion() -> None:
    params = FairnessParams(adverse_impact_min=0.8, tolerance=0.05)
    assert fairness.gate_refusals(_record({"gender": 0.95, "age": None}), None, params) == []
    low = fairness.gate_refusals(_record({"gender": 0.7}), None, params)
    assert len(low) == 1
    assert "gender" in low[0]
    assert "below the limit 0.8" in low[0]
    worse = fairness.gate_refusals(_record({"region": 0.86}), _record({"region": 0.95}), params)
    assert len(worse) == 1
    assert "worse than the champion's 0.950" in worse[0]
    # within the tolerance of the champion: fine
    assert (
        fairness.gate_refusals(_record({"region": 0.92}), _record({"region": 0.95}), params) == []
    )


def test_gender_is_an_optional_nullable_entity_column_and_never_a_feature() -> None:
    for table in ("merchants", "consumers"):
        assert "gender" in contract.TABLES[table].columns
        assert "gender" in contract.TABLES[table].nullable
    for name in ("merchant", "consumer"):
        defined = definitions(name, FEATURE_PARAMS)
        read = {c for e in defined.catalog.expressions() for c in e.meta.root_names()}
        assert "gender" not in read, name
        assert "gender" not in {s.name for s in defined.catalog.specs}


def test_features_do_not_change_with_gender() -> None:
    ids = ["C1", "C2"]
    ts = dt.datetime(2024, 5, 3, 9)
    events = consumer_events(
        [
            ("C1", ts, "income", 5000.0, None, 5000.0),
            ("C2", ts, "purchase", 80.0, "M1", None),
        ]
    )
    spine = pl.DataFrame({"entity_id": ids, "as_of": [AS_OF, AS_OF]})
    base = inputs("consumer", events, ids)

    def with_gender(values: list[str | None]) -> object:
        ents = (
            entities(ids)
            .drop("onboarded_on")
            .with_columns(pl.Series("gender", values, dtype=pl.String))
        )
        return dataclasses.replace(base, entities=ents.lazy())

    one = features("consumer", spine, with_gender(["female", "male"]))
    other = features("consumer", spine, with_gender(["male", None]))
    assert "gender" not in one.columns
    assert_frame_equal(one, other)


def test_gender_comes_from_its_own_stream_and_a_bias_shifts_only_its_group() -> None:
    a, b = draw_gender(3, 5000, stream=1), draw_gender(3, 5000, stream=1)
    assert (a == b).all()
    shares = {g: float(np.mean(a == g)) for g in GENDERS}
    assert all(0.45 < s < 0.51 for s in shares.values()), shares
    assert 0.015 < float(np.mean(pd_isnull(a))) < 0.045
    bias = GroupBias.of({"attribute": "gender", "group": "female", "pd_multiplier": 3.0})
    shift = bias.shift(a, 0.84)
    assert np.all(shift[a == "female"] == pytest.approx(math.log(3.0) / 0.84))
    assert np.all(shift[a != "female"] == 0.0)
    with pytest.raises(ValueError, match="expected a positive pd_multiplier"):
        GroupBias("gender", "female", 0.0)
    with pytest.raises(ValueError, match="expected a bias on one of"):
        GroupBias("region", "female", 2.0)


def pd_isnull(values: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in values])


def test_a_planted_bias_raises_the_group_s_true_risk_and_leaves_others_alike(
    tmp_path: Path,
) -> None:
    spec = dict(merchants=0, consumers=1500, months=12, seed=4, flavour="bank")
    gaps = {}
    planted = {"attribute": "gender", "group": "female", "pd_multiplier": 4.0}
    for name, bias in (("fair", None), ("biased", planted)):
        root = tmp_path / name
        generate(WorldSpec(**spec, bias=bias), root / "raw", root / "truth")
        truth = pl.read_parquet(root / "truth" / "loans.parquet")
        people = pl.read_parquet(root / "raw" / "consumers.parquet")
        by = (
            truth.join(people, left_on="entity_id", right_on="consumer_id")
            .group_by("gender")
            .agg((pl.col("true_pd") / (1 - pl.col("true_pd"))).log().mean().alias("logit"))
        )
        mean = dict(zip(by["gender"], by["logit"], strict=True))
        gaps[name] = mean["female"] - mean["male"]
    # at least ln 4 more log-odds for the group (the interactions on discipline add more)
    assert abs(gaps["fair"]) < 0.5, gaps
    assert gaps["biased"] > math.log(4.0), gaps


def test_attributes_from_the_validated_entity_table(tmp_path: Path) -> None:
    validated = tmp_path / "data" / "validated"
    validated.mkdir(parents=True)
    pl.DataFrame(
        {
            "consumer_id": ["C1", "C2", "C3"],
            "region": ["zhejiang", "sichuan", None],
            "birth_year": pl.Series([2000, 1980, None], dtype=pl.Int32),
            "gender": ["female", None, "male"],
        }
    ).write_parquet(validated / "consumers.parquet")
    # merchants held without gender (a lender that does not record it) and no birth year
    pl.DataFrame({"merchant_id": ["M1"], "region": ["henan"]}).write_parquet(
        validated / "merchants.parquet"
    )
    rows = pl.DataFrame({"entity_id": ["C2", "C1", "C3", "C1"], "as_of": [dt.date(2024, 3, 1)] * 4})
    layout = Layout(tmp_path / "data")
    got = pipeline_fairness.attributes(layout, "consumer", rows, FairnessParams())
    assert got["gender"].to_list() == [None, "female", "male", "female"]
    assert got["age"].to_list() == ["35-49", "<25", None, "<25"]
    assert got["region"].to_list() == ["sichuan", "zhejiang", None, "zhejiang"]
    merchant = pipeline_fairness.attributes(
        layout, "merchant", rows.with_columns(pl.lit("M1").alias("entity_id")), FairnessParams()
    )
    assert merchant["gender"] is None
    assert merchant["age"] is None
    assert merchant["region"].to_list() == ["henan"] * 4
    with pytest.raises(ValueError, match="expected columns"):
        pipeline_fairness.attributes(layout, "consumer", rows.drop("as_of"), FairnessParams())
