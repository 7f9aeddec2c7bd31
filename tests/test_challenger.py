"""Champion/challenger on the live book: hand-checked swaps, the test cell, the score stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal
from registry_world import (
    private_world,
    register_folder,
    renamed_scorer,
    scoring_date,
    worse_scorer,
)
from typer.testing import CliRunner

from models import stability
from models.stability import Levels
from pipeline import challenger, registry
from pipeline.cli import app
from pipeline.stages import score
from pipeline.storage import Layout

BANDS = ("poor", "fair", "good", "very_good", "excellent")
SEGMENT = "merchant"


def _book(scores: list[int], limits: list[float], pds: list[float], bands: list[str]):
    return pl.DataFrame(
        {
            "entity_id": [f"e{i}" for i in range(len(scores))],
            "segment": SEGMENT,
            "pd": pds,
            "score": pl.Series(scores, dtype=pl.Int32),
            "band": bands,
            "limit": limits,
            "binding_constraint": "cap",
        }
    )


@pytest.fixture
def books() -> tuple[pl.DataFrame, pl.DataFrame]:
    # e3 scores above the cut-off but is knocked out (limit 0): not approved by the champion.
    champion = _book(
        [600, 540, 700, 560, 620, 500],
        [1000.0, 0.0, 5000.0, 0.0, 2000.0, 0.0],
        [0.02, 0.08, 0.01, 0.05, 0.03, 0.15],
        ["good", "poor", "excellent", "fair", "good", "poor"],
    )
    contender = _book(
        [580, 560, 650, 600, 540, 560],
        [900.0, 800.0, 3000.0, 700.0, 0.0, 500.0],
        [0.03, 0.04, 0.02, 0.03, 0.07, 0.05],
        ["fair", "fair", "very_good", "good", "poor", "fair"],
    )
    return champion, contender


def test_swap_counts_and_their_expected_bad_rates_by_hand(books) -> None:
    champion, contender = books
    got = challenger.compare(
        champion,
        contender,
        champion_cutoff=550,
        challenger_cutoff=550,
        band_order=BANDS,
        levels=Levels(),
        bins=3,
    )
    # champion approves e0 e2 e4; challenger e0 e1 e2 e3 e5
    assert got["approved"] == {"champion": 3, "challenger": 5, "both": 2}
    assert got["swap_in"]["count"] == 3  # e1 e3 e5
    assert got["swap_in"]["expected_bad_rate_champion"] == pytest.approx((0.08 + 0.05 + 0.15) / 3)
    assert got["swap_in"]["expected_bad_rate_challenger"] == pytest.approx((0.04 + 0.03 + 0.05) / 3)
    assert got["swap_out"] == {
        "count": 1,  # e4
        "expected_bad_rate_champion": pytest.approx(0.03),
        "expected_bad_rate_challenger": pytest.approx(0.07),
    }
    assert got["approved_expected_bad_rate"]["champion"] == pytest.approx(0.02)
    assert got["limits"]["champion"] == {
        "total": 8000.0,
        "by_band": {
            "poor": 0.0,
            "fair": 0.0,
            "good": 3000.0,
            "very_good": 0.0,
            "excellent": 5000.0,
        },
    }
    assert got["limits"]["challenger"]["by_band"] == {
        "poor": 0.0,
        "fair": 2200.0,
        "good": 700.0,
        "very_good": 3000.0,
        "excellent": 0.0,
    }
    assert got["score_shift"]["mean"] == pytest.approx(-5.0)  # (-20+20-50+40-80+60)/6
    assert got["score_shift"]["quantiles"]["p1"] == -80.0
    assert got["score_shift"]["psi"] == pytest.approx(
        stability.psi(
            np.array([600, 540, 700, 560, 620, 500.0]),
            np.array([580, 560, 650, 600, 540, 560.0]),
            3,
        )
    )
    # a cut-off is each model's own: raising the challenger's to 600 drops e0 e1 e5 from it
    stricter = challenger.compare(
        champion,
        contender,
        champion_cutoff=550,
        challenger_cutoff=600,
        band_order=BANDS,
        levels=Levels(),
        bins=3,
    )
    assert stricter["approved"]["challenger"] == 2  # e2 (650) and e3 (600)
    assert stricter["swap_in"]["count"] == 1  # e3


def test_compare_refuses_books_of_other_entities(books) -> None:
    champion, contender = books
    with pytest.raises(ValueError, match="same entities"):
        challenger.compare(
            champion,
            contender.reverse(),
            champion_cutoff=550,
            challenger_cutoff=550,
            band_order=BANDS,
            levels=Levels(),
        )


def test_decide_applies_the_challenger_in_the_cell_only(books) -> None:
    champion, contender = books
    champion = champion.with_columns(pl.lit(1, dtype=pl.Int32).alias("model_version"))
    cell = np.array([True, False, True, False, False, False])
    out = challenger.decide(champion, contender, cell, champion_version=1, challenger_version=2)
    assert (
        out["decided_by"].to_list() == ["challenger", "champion", "challenger"] + ["champion"] * 3
    )
    assert out["model_version"].to_list() == [2, 1, 2, 1, 1, 1]
    assert out["score"].to_list() == [580, 540, 650, 560, 620, 500]
    assert out["limit"].to_list() == [900.0, 0.0, 3000.0, 0.0, 2000.0, 0.0]
    assert out["band"].to_list() == ["fair", "poor", "very_good", "fair", "good", "poor"]
    assert_series_equal(out["champion_pd"], champion["pd"], check_names=False)
    assert_series_equal(out["challenger_score"], contender["score"], check_names=False)
    assert out.columns[: champion.width] == champion.columns  # today's columns first, same order


def _reference_hash(text: str) -> int:
    """FNV-1a 64 one byte at a time, then fmix64: a plain copy to hold the vectorised one to."""
    mask = 2**64 - 1
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x100000001B3) & mask
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & mask
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & mask
    return value ^ (value >> 33)


def test_cell_hash_is_that_of_the_salted_id() -> None:
    ids = ["M000001", "c-42", "商户-7", "", "a much longer entity identifier 123456789"]
    got = challenger.stable_hash(ids, seed=5)
    assert [int(v) for v in got] == [_reference_hash(f"5:{i}") for i in ids]


def test_cell_is_fixed_by_entity_and_respects_the_share() -> None:
    ids = [f"M{i:07d}" for i in range(20_000)]
    flags = challenger.in_cell(ids, 0.1, seed=3)
    assert abs(flags.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / len(ids))
    # the same entity is in the same cell whatever else is scored, in whatever order
    subset = ids[::-7]
    assert (challenger.in_cell(subset, 0.1, seed=3) == flags[::-7]).all()
    # a larger share keeps every entity of a smaller one; 0 and 1 are none and all
    assert (challenger.in_cell(ids, 0.3, seed=3) >= flags).all()
    assert not challenger.in_cell(ids, 0.0, seed=3).any()
    assert challenger.in_cell(ids, 1.0, seed=3).all()
    # another seed draws another cell of the same size
    other = challenger.in_cell(ids, 0.1, seed=4)
    assert (other != flags).any()
    assert abs(other.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / len(ids))
    with pytest.raises(ValueError, match=r"share in \[0, 1\]"):
        challenger.in_cell(ids, 1.5)


# --- the score stage with a challenger on the live book -----------------------------------


@pytest.fixture
def contested(trained_world, tmp_path: Path):
    """A private world whose challenger alias points at a second, deliberately worse version."""
    scoring = trained_world.scoring.model_copy(
        update={"challenger_cell": 0.3, "challenger_seed": 1}
    )
    world = private_world(trained_world, tmp_path, scoring=scoring)
    folder = tmp_path / "challenger"
    version = register_folder(world, worse_scorer(world, SEGMENT, folder), folder, "challenger")
    return world, version


def test_score_compares_with_the_challenger_and_applies_the_cell(contested) -> None:
    world, version = contested
    manifest = score.run(world, SEGMENT)
    target = Layout(world.data_dir).scores(SEGMENT, scoring_date(world))
    scores = pl.read_parquet(target / "scores.parquet")
    section = manifest["challenger"]
    assert section["model_version"] == version
    assert section["champion_version"] == manifest["model_version"] == 1
    assert section["model_uri"] == registry.version_uri(registry.model_name(SEGMENT), version)

    # the test cell is the hash's, and its rows carry the challenger's decision
    cell = challenger.in_cell(scores["entity_id"], 0.3, seed=1)
    assert (scores["decided_by"] == "challenger").to_numpy().tolist() == cell.tolist()
    assert section["decided_by_challenger"] == int(cell.sum()) > 0
    mine = scores.filter(pl.col("decided_by") == "challenger")
    theirs = scores.filter(pl.col("decided_by") == "champion")
    assert_series_equal(mine["pd"], mine["challenger_pd"], check_names=False)
    assert_series_equal(theirs["score"], theirs["champion_score"], check_names=False)
    assert set(mine["model_version"]) == {version}
    assert set(theirs["model_version"]) == {1}
    assert mine["reason_1"].null_count() < mine.height  # the cell's reasons are the challenger's

    # the manifest's counts are those of the two models' columns in the scores file
    cutoff = world.limits[SEGMENT].approval_cutoff
    champ = (pl.col("champion_score") >= cutoff) & (pl.col("champion_limit") > 0)
    chall = (pl.col("challenger_score") >= cutoff) & (pl.col("challenger_limit") > 0)
    counts = scores.select(
        champ.sum().alias("champion"),
        chall.sum().alias("challenger"),
        (chall & ~champ).sum().alias("swap_in"),
        (champ & ~chall).sum().alias("swap_out"),
    ).row(0, named=True)
    cmp = section["comparison"]
    assert cmp["approved"]["champion"] == counts["champion"]
    assert cmp["approved"]["challenger"] == counts["challenger"]
    assert cmp["swap_in"]["count"] == counts["swap_in"]
    assert cmp["swap_out"]["count"] == counts["swap_out"]
    assert cmp["limits"]["challenger"]["total"] == pytest.approx(scores["challenger_limit"].sum())
    html = (target / challenger.REPORT_FILE).read_text()
    assert "swap-in" in html
    assert f"v{version}" in html
    assert json.loads((target / "manifest.json").read_text())["challenger"] == section

    # a forced rerun draws the same cell: the same entities get the challenger's decision
    again = score.run(world, SEGMENT, force=True)
    rescored = pl.read_parquet(target / "scores.parquet")
    assert_frame_equal(
        rescored.select("entity_id", "decided_by"), scores.select("entity_id", "decided_by")
    )
    assert again["challenger"]["comparison"] == cmp


def test_cli_prints_the_comparison(contested) -> None:
    world, version = contested
    params = world.data_dir.parent / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(world.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["score", "--params", str(params), "--segment", SEGMENT])
    assert result.exit_code in (0, 3), result.output
    assert f"challenger v{version} vs champion v1" in result.output
    assert "swap-in" in result.output


def test_a_challenger_on_the_champion_version_is_no_comparison(trained_world, tmp_path) -> None:
    world = private_world(trained_world, tmp_path)  # challenger and champion both v1
    manifest = score.run(world, SEGMENT)
    assert manifest["challenger"] is None
    scores = pl.read_parquet(
        Layout(world.data_dir).scores(SEGMENT, scoring_date(world)) / "scores.parquet"
    )
    assert set(scores["decided_by"]) == {"champion"}
    assert not any(c.startswith("challenger_") for c in scores.columns)
    assert manifest["expected"]["n"] == scores.height
    assert manifest["expected"]["bad_rate"] == pytest.approx(scores["pd"].mean())


def test_a_challenger_on_other_features_is_reported_not_compared(trained_world, tmp_path) -> None:
    """The champion's book is scored whatever the challenger; the manifest says why not."""
    world = private_world(trained_world, tmp_path)
    folder = tmp_path / "legacy"
    version = register_folder(world, renamed_scorer(world, SEGMENT, folder), folder, "challenger")
    manifest = score.run(world, SEGMENT)
    assert manifest["challenger"]["model_version"] == version
    assert "legacy_feature" in manifest["challenger"]["skipped"]
    assert manifest["rows_out"] == manifest["rows_in"]
    assert challenger.summary_line(manifest["challenger"]).startswith(
        f"challenger v{version} not compared"
    )
    target = Layout(world.data_dir).scores(SEGMENT, scoring_date(world))
    assert not (target / challenger.REPORT_FILE).exists()
