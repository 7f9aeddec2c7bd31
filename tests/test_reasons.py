"""Reason codes and sub-scores: only catalog features with adverse contributions, in order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from features.catalog import DIMENSIONS, FeatureSpec
from models.reasons import (
    N_REASONS,
    calibrated_factor,
    dimension_points,
    reason_text,
    top_reasons,
)
from models.scaling import ScalingParams

SPECS = tuple(
    FeatureSpec(
        name=f"f{i}",
        segment="merchant",
        dimension=DIMENSIONS[i % len(DIMENSIONS)],
        window_days=90,
        monotone=1,
        description=f"feature {i}",
        reason=f"reason {i}",
    )
    for i in range(7)
)
TEXT = {reason_text(s): i for i, s in enumerate(SPECS)}
CONTRIB = st.floats(-3, 3, allow_nan=False)


@settings(deadline=None)
@given(
    contrib=arrays(
        np.float64, st.tuples(st.integers(1, 20), st.just(len(SPECS) + 1)), elements=CONTRIB
    ),
    threshold=st.sampled_from([0.0, 0.01, 0.5]),
)
def test_reasons_name_catalog_features_with_adverse_contributions_in_order(
    contrib: np.ndarray, threshold: float
) -> None:
    codes = top_reasons(contrib, SPECS, min_contribution=threshold)
    assert codes.shape == (contrib.shape[0], N_REASONS)
    for row, reasons in zip(contrib, codes, strict=True):
        named = [r for r in reasons if r is not None]
        assert all(r is None for r in reasons[len(named) :])  # None only at the end
        idx = [TEXT[r] for r in named]  # every reason is a catalog feature's text
        assert len(set(idx)) == len(idx)
        values = row[idx]
        assert (values > threshold).all()
        assert (np.diff(values) <= 0).all()
        adverse = int((row[: len(SPECS)] > threshold).sum())
        assert len(named) == min(N_REASONS, adverse)
        if named:  # nothing left out beats the weakest reason named
            rest = np.delete(row[: len(SPECS)], idx)
            assert (rest <= values[-1]).all()


def test_reason_text_is_code_and_plain_text() -> None:
    codes = top_reasons(np.array([[0.0, 0.2, 0, 0, 0, 0, 0.5]]), SPECS)
    assert codes.tolist() == [["F6: reason 6", "F1: reason 1", None, None]]


def test_fewer_features_than_reasons_pads_with_none() -> None:
    codes = top_reasons(np.array([[1.0, 2.0]]), SPECS[:2])
    assert codes.tolist() == [["F1: reason 1", "F0: reason 0", None, None]]


@settings(deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 10), st.just(len(SPECS))), elements=CONTRIB))
def test_dimension_points_share_out_the_whole_contribution(contrib: np.ndarray) -> None:
    points = dimension_points(contrib, SPECS, 57.7)
    assert set(points) == set(DIMENSIONS)
    total = sum(points.values())
    np.testing.assert_allclose(total, -57.7 * contrib.sum(axis=1), atol=1e-9)


def test_calibrated_factor_is_the_slope_of_the_calibration_curve() -> None:
    factor = ScalingParams().factor
    raw = np.linspace(-6, 0, 20)
    assert calibrated_factor(factor, raw, 1 / (1 + np.exp(-(0.5 * raw - 1)))) == pytest.approx(
        0.5 * factor
    )
    assert calibrated_factor(factor, raw[:1], raw[:1]) == factor  # no curve: the model's scale
    assert calibrated_factor(factor, raw, np.full(20, 0.02)) == factor  # flat: no usable slope


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected contributions"):
        top_reasons(np.zeros((2, 3)), SPECS)
    with pytest.raises(ValueError, match="expected at least one reason"):
        top_reasons(np.zeros((2, 7)), SPECS, n=0)
