"""The one stability index (PSI/CSI) and the one status rule every stage judges by."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import stability
from models.stability import Levels


def test_psi_by_hand() -> None:
    expected = np.arange(100, dtype=float)  # median edge at 49.5: two bins of 50%
    actual = np.concatenate([np.zeros(75), np.full(25, 99.0)])
    by_hand = 0.25 * math.log(0.75 / 0.5) + (-0.25) * math.log(0.25 / 0.5)
    assert stability.psi(expected, actual, bins=2) == pytest.approx(by_hand)
    assert stability.psi(expected, expected, bins=10) == pytest.approx(0.0)


def test_psi_counts_missing_values_as_a_bin() -> None:
    expected = np.arange(100, dtype=float)
    actual = np.concatenate([np.zeros(45), np.full(45, 99.0), np.full(10, np.nan)])
    by_hand = 2 * (0.45 - 0.5) * math.log(0.45 / 0.5) + (0.1 - 1e-6) * math.log(0.1 / 1e-6)
    assert stability.psi(expected, actual, bins=2) == pytest.approx(by_hand)


def test_csi_per_feature_largest_first() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, 2))
    test = train.copy()
    test[:, 1] += 1.0
    table = stability.csi(train, test, ["same", "shifted"], Levels())
    assert table["feature"].to_list() == ["shifted", "same"]
    assert table["csi"][1] == pytest.approx(0.0)
    assert table["status"].to_list() == ["alert", "ok"]


def test_bins_are_upper_inclusive_with_a_missing_bin() -> None:
    shares = stability.bin_shares(np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan]), [1.0, 2.0])
    assert shares.tolist() == pytest.approx([2 / 6, 2 / 6, 1 / 6, 1 / 6])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "ok"),
        (0.0999, "ok"),
        (0.10, "warning"),  # from the level on, as the convention's "under 0.10 is stable"
        (0.2499, "warning"),
        (0.25, "alert"),
        (3.0, "alert"),
        (float("nan"), "alert"),  # stability that cannot be shown is not assumed
    ],
)
def test_status_rule(value: float, expected: str) -> None:
    levels = Levels(warn=0.10, alert=0.25)
    assert stability.status(value, levels) == expected


def test_levels_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="alert >= warn"):
        Levels(warn=0.3, alert=0.2)


def test_worst_status() -> None:
    assert stability.worst([]) == "ok"
    assert stability.worst(["ok", "alert", "warning"]) == "alert"
    assert stability.worst(["ok", "warning"]) == "warning"


def test_no_other_module_computes_a_stability_index() -> None:
    """One definition: the PSI formula and the status words live in models/stability.py only."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    offenders = []
    for folder in ("features", "models", "pipeline"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "stability.py":
                continue
            text = path.read_text()
            if "np.log(a / e)" in text or '"watch"' in text or '"shift"' in text:
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
