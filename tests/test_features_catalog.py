"""The catalog: every feature has its metadata, and the catalog covers the five dimensions."""

from __future__ import annotations

from dataclasses import asdict

import polars as pl
import pytest

from features import catalog
from features.catalog import DIMENSIONS, FeatureSpec
from features.engine import POLICY_INPUTS


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_every_feature_has_complete_metadata(segment: str) -> None:
    specs = catalog.specs(segment)
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
    specs = catalog.specs(segment)
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
    specs = catalog.specs(segment)
    assert [FeatureSpec(**asdict(s)) for s in specs] == specs
    old = {k: v for k, v in asdict(specs[0]).items() if k != "family"}
    assert FeatureSpec(**old).family == ""
    assert len(catalog.catalog_hash(segment)) == 12
    assert all(isinstance(e, pl.Expr) for e in catalog.expressions(segment))


def test_declare_rejects_bad_metadata() -> None:
    with pytest.raises(ValueError, match="dimension"):
        catalog.declare(
            "x", pl.lit(1), segment="merchant", dimension="luck", monotone=0,
            description="a feature", reason="r",
        )  # fmt: skip
    with pytest.raises(ValueError, match="monotone"):
        catalog.declare(
            "x", pl.lit(1), segment="merchant", dimension="behaviour", monotone=2,
            description="a feature", reason="r",
        )  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        catalog.declare(
            "tenure_days", pl.lit(1), segment="merchant", dimension="identity", monotone=0,
            description="a feature", reason="r",
        )  # fmt: skip


def test_catalog_page_lists_every_feature() -> None:
    page = catalog.markdown()
    for segment in ("merchant", "consumer"):
        for name in catalog.names(segment):
            assert f"`{name}`" in page
    assert page == catalog.markdown()
