"""Calibration on known cases: Platt recovers a known logistic map, isotonic a known step."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibrate import PD_CEIL, PD_FLOOR, Calibrator, fit_calibrator


def test_platt_recovers_a_known_logistic_map() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, size=60_000)
    true_pd = 1 / (1 + np.exp(-(0.5 * raw - 2.0)))
    y = (rng.random(raw.size) < true_pd).astype(float)
    cal = fit_calibrator(raw, y, "platt")
    assert cal.a == pytest.approx(0.5, abs=0.03)
    assert cal.b == pytest.approx(-2.0, abs=0.05)
    assert np.abs(cal.predict(raw) - true_pd).max() < 0.02


def test_isotonic_recovers_a_known_step() -> None:
    # Raw scores below 0 default 2% of the time, above 0 20% of the time.
    rng = np.random.default_rng(1)
    raw = rng.uniform(-3, 3, size=40_000)
    y = (rng.random(raw.size) < np.where(raw < 0, 0.02, 0.20)).astype(float)
    cal = fit_calibrator(raw, y, "isotonic")
    pd_ = cal.predict(np.array([-2.5, -1.0, 1.0, 2.5]))
    assert pd_[:2] == pytest.approx([0.02, 0.02], abs=0.01)
    assert pd_[2:] == pytest.approx([0.20, 0.20], abs=0.02)
    # Calibrated PDs average to the observed default rate on the fitting data.
    assert cal.predict(raw).mean() == pytest.approx(y.mean(), abs=1e-3)
    # Monotone, non-decreasing knots: a higher raw score never gets a lower PD.
    assert np.all(np.diff(cal.y) >= 0)


def test_predictions_are_clipped_away_from_zero_and_one() -> None:
    cal = Calibrator("platt", a=10.0, b=0.0)
    pd_ = cal.predict(np.array([-100.0, 100.0]))
    assert pd_.tolist() == [PD_FLOOR, PD_CEIL]


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_round_trip_through_plain_data(method: str) -> None:
    rng = np.random.default_rng(2)
    raw = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-raw))).astype(float)
    cal = fit_calibrator(raw, y, method)  # type: ignore[arg-type]
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.predict(raw), cal.predict(raw))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="expected calibration method"):
        fit_calibrator(np.zeros(3), np.array([0.0, 1.0, 0.0]), "beta")  # type: ignore[arg-type]
