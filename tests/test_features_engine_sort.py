"""The engine's fast sorts give the same result as the general ones they replace."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features import keys as key_engine
from features import partners as partner_engine
from features.keys import KEY
from features.partners import partner_measures


def _check_pair_order(partners: pl.Series, order: np.ndarray, tag: np.ndarray) -> None:
    """Each partner's rows form one run, in row order, and tags are equal iff partners are."""
    assert sorted(order.tolist()) == list(range(partners.len()))
    frame = pl.DataFrame({"p": partners.gather(order), "row": order, "tag": tag})
    runs = frame.select((pl.col("p") != pl.col("p").shift(1)).fill_null(True).cum_sum())
    per_partner = frame.with_columns(runs.to_series().alias("run")).group_by("p")
    check = per_partner.agg(
        pl.col("run").n_unique().alias("runs"),
        (pl.col("row").diff().drop_nulls() > 0).all().alias("in_order"),
        pl.col("tag").n_unique().alias("tags"),
    )
    assert check["runs"].to_list() == [1] * check.height
    assert check["in_order"].all()
    assert check["tags"].to_list() == [1] * check.height
    assert frame["tag"].n_unique() == frame["p"].n_unique()


def _partners(n: int, distinct: int, seed: int = 7) -> pl.Series:
    rng = np.random.default_rng(seed)
    ids = pl.Series([f"P{i}" for i in rng.integers(0, distinct, n)])
    return ids.hash(seed=1)


def test_pair_order_groups_partners_in_row_order() -> None:
    partners = _partners(5_000, 300)
    order, tag = partner_engine._pair_order(partners)
    _check_pair_order(partners, order, tag)


def test_pair_order_rehashes_when_cut_hashes_clash() -> None:
    # Four rows leave 62 bits of each hash: 1, 2 and 3 share their top bits and clash.
    partners = pl.Series([1, 2, 1, 3], dtype=pl.UInt64)
    order, tag = partner_engine._pair_order(partners)
    _check_pair_order(partners, order, tag)


def test_pair_order_falls_back_to_the_stable_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partner_engine, "_TAG_TRIES", 0)
    partners = _partners(2_000, 50)
    order, tag = partner_engine._pair_order(partners)
    _check_pair_order(partners, order, tag)
    stable = partners.to_frame("p").select(pl.arg_sort_by("p", maintain_order=True))
    assert order.tolist() == stable.to_series().to_list()


def _log(n: int, entities: int, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    code = np.sort(rng.integers(0, entities, n))
    day = rng.integers(45_000, 45_400, n)
    key = code * (1 << key_engine.DAY_BITS) + day
    partner = pl.Series([f"C{i}" for i in rng.integers(0, 40, n)]).hash(seed=2)
    partner = partner.scatter(rng.integers(0, n, n // 10), None)
    return pl.DataFrame({KEY: key, "partner": partner}).sort(KEY, maintain_order=True)


def test_partner_measures_do_not_depend_on_the_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _log(4_000, 30)
    hashes = events["partner"].drop_nulls().unique().sort().head(10)
    onset = pl.DataFrame({"__hash": hashes, "__onset": np.arange(45_000, 45_400, 40)})

    def measures() -> tuple[pl.DataFrame, pl.DataFrame]:
        main, bad = partner_measures(
            events.lazy(), "partner", windows=(30, 90), onset=onset, prefix="p"
        )
        assert bad is not None
        columns = [m.cast(pl.Int64).alias(n) for n, m in main.measures.items()]
        return main.frame.select(KEY, *columns), bad.frame

    fast = measures()
    monkeypatch.setattr(partner_engine, "_TAG_TRIES", 0)
    general = measures()
    assert_frame_equal(fast[0], general[0])
    assert_frame_equal(fast[1], general[1])


def test_mix_of_few_values_matches_the_partner_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _log(3_000, 25)
    category = (pl.col("partner") % 5).alias("category")
    events = events.select(KEY, pl.when(pl.col("partner").is_not_null()).then(category))
    keys = pl.DataFrame({key_engine.ENTITY: [f"E{i}" for i in range(25)]})
    codes = keys.with_row_index(key_engine.CODE).with_columns(
        pl.col(key_engine.CODE).cast(pl.Int64)
    )
    spine = keys.join(
        pl.DataFrame({key_engine.AS_OF: [dt.date(2023, 6, 1), dt.date(2024, 1, 1)]}), how="cross"
    )
    snaps = key_engine.Snapshots.of(spine, codes)
    wanted = {"c_new_ever", "c_n_ever", "c_sq_ever"}

    def mix() -> pl.DataFrame:
        columns = partner_engine.read_mix(
            events.lazy(), "category", snaps, wanted, prefix="c", windows=()
        )
        return pl.DataFrame(columns).select(sorted(wanted))

    few = mix()
    monkeypatch.setattr(partner_engine, "_FEW_VALUES", 0)
    assert_frame_equal(few, mix())
    assert few["c_n_ever"].sum() > 0
