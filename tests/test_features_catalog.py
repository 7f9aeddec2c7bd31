"""The catalog: every feature has its metadata, and the catalog covers the five dimensions."""

from __future__ import annotations

from dataclasses import asdict

import polars as pl
import pytest

from features import catalog
from features.catalog import DIMENSIONS, Catalog, FeatureSpec
from features.definitions import POLICY_INPUTS, catalog_page, definitions
from tests.features_helpers import PARAMS


def _catalog(segment: str) -> Catalog:
    return definitions(segment, PARAMS).catalog


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_every_feature_has_complete_metadata(segment: str) -> None:
    specs = _catalog(segment).specs
    assert 60 <= len(specs) <= 150
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert not set(names) & set(POLICY_INPUTS)
    for spec in specs:
        assert spec.segment == segment
        assert spec.dimension in DIMENSIONS, spec.name
        assert spec.monotone in (-1, 0, 1), spec.name
        assert spec.pd_monotone == -spec.monotone
        assert len(spec.description) > 15, spec.name
        assert spec.reason.strip(), spec.name
        assert spec.family, spec.name
        assert spec.window_days is None or spec.window_days > 0


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_catalog_covers_all_dimensions_and_families(segment: str) -> None:
    specs = _catalog(segment).specs
    by_dimension = {d: sum(s.dimension == d for s in specs) for d in DIMENSIONS}
    assert all(n >= 3 for n in by_dimension.values()), by_dimension
    families = {s.family for s in specs}
    wanted = {
        "windowed sum",
        "windowed count",
        "windowed mean",
        "dispersion",
        "recency",
        "trend",
        "volatility",
        "last minus mean",
        "active months",
        "concentration",
        "repayment history",
        "counterparty quality",
        "network size",
        "repeat rate",
    }
    assert wanted <= families, wanted - families
    assert {s.window_days for s in specs} >= {7, 30, 90, 180, 365}


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_specs_survive_the_scorer_round_trip(segment: str) -> None:
    specs = _catalog(segment).specs
    assert [FeatureSpec(**asdict(s)) for s in specs] == specs
    old = {k: v for k, v in asdict(specs[0]).items() if k != "family"}
    assert FeatureSpec(**old).family == ""
    assert len(_catalog(segment).hash) == 12
    assert all(isinstance(e, pl.Expr) for e in _catalog(segment).expressions())


def test_declare_rejects_bad_metadata() -> None:
    with pytest.raises(ValueError, match="dimension"):
        catalog.CatalogBuilder("merchant").declare(
            "x", pl.lit(1), dimension="luck", monotone=0,
            description="a feature", reason="r",
        )  # fmt: skip
    with pytest.raises(ValueError, match="monotone"):
        catalog.CatalogBuilder("merchant").declare(
            "x", pl.lit(1), dimension="behaviour", monotone=2,
            description="a feature", reason="r",
        )  # fmt: skip
    with pytest.raises(ValueError, match="segment"):
        catalog.CatalogBuilder("pawnshop").declare(
            "x", pl.lit(1), dimension="behaviour", monotone=0,
            description="a feature", reason="r",
        )  # fmt: skip
    builder = catalog.CatalogBuilder("merchant")
    for _ in range(2):
        builder.declare(
            "x", pl.lit(1), dimension="identity", monotone=0, description="a feature", reason="r"
        )
    with pytest.raises(ValueError, match="twice"):
        builder.build()


def test_catalog_page_lists_every_feature() -> None:
    page = catalog_page(PARAMS)
    for segment in ("merchant", "consumer"):
        for name in _catalog(segment).names:
            assert f"`{name}`" in page
    assert page == catalog_page(PARAMS)
