"""The cut-off strategy table against a brute-force count."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from polars.testing import assert_frame_equal

from models.strategy import cutoff_table


def test_a_hand_worked_table() -> None:
    table = cutoff_table(
        scores=np.array([700, 650, 600, 550, 500]),
        bad=np.array([0, 0, 1, 0, 1]),
        limits=np.array([5000.0, 3000.0, 2000.0, 1000.0, 500.0]),
        cutoffs=[600, 550, 800],
    )
    expected = pl.DataFrame(
        {
            "cutoff": pl.Series([550, 600, 800], dtype=pl.Int32),
            "approved": [4, 3, 0],
            "approval_rate": [0.8, 0.6, 0.0],
            "bads_approved": [1, 1, 0],
            "bad_rate_approved": [0.25, 1 / 3, None],
            "total_limit": [11000.0, 10000.0, 0.0],
        }
    )
    assert_frame_equal(table, expected)


@settings(deadline=None)
@given(
    data=st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            arrays(np.int64, n, elements=st.integers(350, 950)),
            arrays(np.int64, n, elements=st.integers(0, 1)),
            arrays(np.float64, n, elements=st.floats(0, 1e6)),
        )
    ),
    cutoffs=st.lists(st.integers(300, 1000), min_size=1, max_size=8),
)
def test_matches_brute_force(data, cutoffs: list[int]) -> None:
    scores, bad, limits = data
    table = cutoff_table(scores, bad, limits, cutoffs)
    assert table["cutoff"].to_list() == sorted(set(cutoffs))
    for row in table.iter_rows(named=True):
        approved = scores >= row["cutoff"]
        assert row["approved"] == approved.sum()
        assert row["bads_approved"] == bad[approved].sum()
        assert row["total_limit"] == pytest.approx(limits[approved].sum())
    assert (table["approval_rate"].diff().drop_nulls() <= 0).all()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        cutoff_table(np.array([600]), np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="0/1"):
        cutoff_table(np.array([600]), np.array([2]), np.array([1.0]))
    with pytest.raises(ValueError, match="limits >= 0"):
        cutoff_table(np.array([600]), np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="at least one cut-off"):
        cutoff_table(np.array([600]), np.array([0]), np.array([1.0]), cutoffs=[])
