"""Score scaling and bands: range, monotonicity, exact anchors, the band table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.scaling import Band, ScalingParams, pd_to_score, score_to_band

PARAMS = ScalingParams()
PDS = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(deadline=None)
@given(arrays(np.float64, st.integers(1, 50), elements=PDS))
def test_score_is_an_integer_in_range_and_never_rises_with_pd(pd_: np.ndarray) -> None:
    order = np.argsort(pd_, kind="stable")
    score = pd_to_score(pd_[order], PARAMS)
    assert score.dtype == np.int32
    assert (score >= 350).all()
    assert (score <= 950).all()
    assert (np.diff(score) <= 0).all()


@settings(deadline=None)
@given(st.integers(350, 950))
def test_band_always_matches_the_band_table(score: int) -> None:
    (band,) = score_to_band(np.array([score]), PARAMS)
    matching = [b for b in PARAMS.bands if b.min <= score <= b.max]
    assert [b.name for b in matching] == [band]


def test_exact_anchors() -> None:
    # odds 50:1 score base_score, doubling the odds adds pdo, the ends of the PD range clip
    pd_ = np.array([1 / 51, 1 / 101, 0.0, 1.0, 0.5])
    assert pd_to_score(pd_, PARAMS).tolist() == [600, 640, 950, 350, 374]
    assert math.isclose(PARAMS.factor, 40 / math.log(2))
    assert score_to_band(np.array([350, 549, 550, 600, 650, 699, 700, 950]), PARAMS).tolist() == [
        "poor",
        "poor",
        "fair",
        "good",
        "very_good",
        "very_good",
        "excellent",
        "excellent",
    ]


def test_params_yaml_scaling_is_the_documented_default() -> None:
    from pathlib import Path

    from pipeline.config import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    assert settings.scaling.band_order == ("poor", "fair", "good", "very_good", "excellent")
    assert settings.scaling.offset == pytest.approx(PARAMS.offset)


@pytest.mark.parametrize(
    "bands",
    [
        (Band(name="a", label="a", min=350, max=599), Band(name="b", label="b", min=601, max=950)),
        (Band(name="a", label="a", min=350, max=599), Band(name="a", label="a", min=600, max=950)),
        (Band(name="a", label="a", min=350, max=949),),
        (Band(name="a", label="a", min=350, max=700), Band(name="b", label="b", min=701, max=700)),
    ],
)
def test_a_band_table_that_does_not_tile_the_range_is_refused(bands: tuple[Band, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        ScalingParams(bands=bands)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="expected PDs"):
        pd_to_score(np.array([0.1, np.nan]), PARAMS)
    with pytest.raises(ValueError, match="expected PDs"):
        pd_to_score(np.array([1.5]), PARAMS)
    with pytest.raises(ValueError, match="expected scores"):
        score_to_band(np.array([349]), PARAMS)
