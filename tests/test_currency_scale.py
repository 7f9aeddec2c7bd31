"""A log in another currency scale scores the same once its scale is set in the source mapping.

The session's world is copied with every money column multiplied by 25 (a currency worth 25
times less, say), plus a ``contract.yaml`` whose ``currency.scale`` (0.04) brings the amounts
back to the unit the model was trained in. Validated and scored with the same registered
models, every entity gets the same PD, score, band and limit as in the original. Without the
scale, the same copy scores differently: the check can fail.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from registry_world import private_world

from features.contract.vocabulary import MONEY
from pipeline.config import Settings
from pipeline.stages import score, validate
from pipeline.storage import Layout

FACTOR = 25.0
SEGMENTS = ("merchant", "consumer")


def _scores(settings: Settings) -> dict[str, pl.DataFrame]:
    out = {}
    for segment in SEGMENTS:
        manifest = score.run(settings, segment)
        as_of = dt.date.fromisoformat(manifest["as_of"])
        folder = Layout(settings.data_dir).scores(segment, as_of)
        out[segment] = pl.read_parquet(folder / "scores.parquet").sort("entity_id")
    return out


def _scaled_copy(source: Settings, tmp_path: Path, scale: float | None) -> Settings:
    """A private copy of the world whose raw money is multiplied by FACTOR, validated again."""
    world = private_world(source, tmp_path)
    raw = Layout(world.data_dir).raw
    raw.mkdir(parents=True)
    for path in Layout(source.data_dir).raw.glob("*.parquet"):
        table = pl.read_parquet(path)
        money = [c for c in MONEY.get(path.stem, ()) if c in table.columns]
        table.with_columns(pl.col(money) * FACTOR).write_parquet(raw / path.name)
    if scale is not None:
        (raw / "contract.yaml").write_text(f"currency: {{code: XTS, scale: {scale}}}\n")
    validate.run(world)
    return world


@pytest.fixture(scope="module")
def original(trained_world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    world = private_world(trained_world, tmp_path_factory.mktemp("original"))
    return _scores(world)


@pytest.mark.slow
def test_amounts_times_25_with_the_scale_set_score_the_same(
    trained_world, original, tmp_path: Path
) -> None:
    scaled = _scores(_scaled_copy(trained_world, tmp_path, scale=1 / FACTOR))
    for segment in SEGMENTS:
        assert original[segment].height > 100
        assert_frame_equal(scaled[segment], original[segment])


@pytest.mark.slow
def test_amounts_times_25_without_the_scale_score_differently(
    trained_world, original, tmp_path: Path
) -> None:
    scaled = _scores(_scaled_copy(trained_world, tmp_path, scale=None))
    for segment in SEGMENTS:
        assert not scaled[segment]["pd"].equals(original[segment]["pd"])
