"""The catalog: every feature has its metadata, and the catalog covers the five dimensions."""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial

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
            "x", pl.lit(1), dimension="identity", monotone=0, description="a feature", reason="r",
            actionable=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        builder.build()


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_actionable_flags_follow_the_rules(segment: str) -> None:
    specs = _catalog(segment).specs
    assert all(isinstance(s.actionable, bool) for s in specs)
    for spec in specs:
        if spec.dimension in catalog.NEVER_ACTIONABLE:
            assert not spec.actionable, spec.name
    history = {s.name for s in specs if s.dimension == "credit_history" and s.actionable}
    # of the repayment record only the debt still owed can change: arrears, open loans, balance
    assert history == {"open_loans", "outstanding_due", "days_past_due_now"}
    assert all(not s.actionable for s in specs if s.name.endswith("_ever"))
    # every segment has things to act on in the dimensions that describe what it does
    for dimension in ("ability_to_pay", "behaviour"):
        assert any(s.actionable for s in specs if s.dimension == dimension), dimension
    assert sum(s.actionable and s.monotone != 0 for s in specs) >= 20


def test_consumer_demographics_and_cash_habits_are_not_actionable() -> None:
    specs = {s.name: s for s in _catalog("consumer").specs}
    assert not specs["age_years"].actionable
    assert not specs["cash_share_90d"].actionable
    assert specs["balance_min_90d"].actionable
    assert specs["penalty_count_90d"].actionable


def test_the_actionable_flag_is_part_of_the_hash() -> None:
    built = _catalog("merchant")
    flipped = [
        catalog.Feature(replace(f.spec, actionable=not f.spec.actionable), f.expression)
        if f.spec.name == "refund_rate_90d"
        else f
        for f in built.features
    ]
    assert catalog.Catalog(built.segment, tuple(flipped), built.basis).hash != built.hash


def _policy(**overrides: object) -> catalog.Actionability:
    base = dict.fromkeys(DIMENSIONS, False) | {"behaviour": True}
    return catalog.Actionability(**{"dimensions": base, **overrides})


def test_actionability_resolves_feature_then_family_then_dimension() -> None:
    policy = _policy(families={"ratio": False}, features={"y": True})
    b = catalog.CatalogBuilder("merchant", actionable=policy)
    declare = partial(b.declare, expression=pl.lit(1), monotone=0, description="a feature",
                      reason="r")  # fmt: skip
    declare("a", dimension="behaviour")
    declare("b", dimension="ability_to_pay")
    declare("c", dimension="behaviour", family="ratio")
    declare("y", dimension="behaviour", family="ratio")
    declare("z", dimension="ability_to_pay", actionable=True)  # the declaration wins
    assert [s.actionable for s in b.build().specs] == [True, False, False, True, True]


def test_actionability_refuses_guesses_and_identity() -> None:
    with pytest.raises(ValueError, match="each of"):
        catalog.Actionability({"behaviour": True})
    with pytest.raises(ValueError, match="never actionable"):
        _policy(dimensions=dict.fromkeys(DIMENSIONS, True))
    declare = partial(catalog.CatalogBuilder("merchant").declare, expression=pl.lit(1),
                      monotone=0, description="a feature", reason="r")  # fmt: skip
    with pytest.raises(ValueError, match="actionable"):
        declare("x", dimension="behaviour")  # no flag and no policy: refused, not guessed
    with pytest.raises(ValueError, match="never actionable"):
        declare("x", dimension="connections", actionable=True)
    with pytest.raises(ValueError, match="never actionable"):
        catalog.CatalogBuilder("merchant", actionable=_policy(features={"x": True})).declare(
            "x", pl.lit(1), dimension="identity", monotone=0, description="a feature",
            reason="r",
        )  # fmt: skip
    stale = catalog.CatalogBuilder("merchant", actionable=_policy(features={"gone": True}))
    stale.declare("x", pl.lit(1), dimension="behaviour", monotone=0, description="a feature",
                  reason="r")  # fmt: skip
    with pytest.raises(ValueError, match="gone"):
        stale.build()


def test_catalog_page_lists_every_feature() -> None:
    page = catalog_page(PARAMS)
    for segment in ("merchant", "consumer"):
        for name in _catalog(segment).names:
            assert f"`{name}`" in page
    assert page == catalog_page(PARAMS)
    assert "| actionable |" in page
    assert "| `age_years` | demographic |  | 0 | no |" in page
