"""The features package: the catalog a value of its params (import rules: test_architecture)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from features.definitions import POLICY_INPUTS, definitions
from tests.features_helpers import PARAMS


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_policy_inputs_are_the_limits_columns(segment: str) -> None:
    defined = definitions(segment, PARAMS)
    assert defined.outputs[-len(POLICY_INPUTS) :] == list(POLICY_INPUTS)
    assert not set(defined.catalog.names) & set(POLICY_INPUTS)


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_configured_windows_add_and_remove_windowed_features(segment: str) -> None:
    default = definitions(segment, PARAMS).catalog
    other = replace(PARAMS, windows=(14, 30, 90, 180, 365))
    changed = definitions(segment, other).catalog
    added, removed = (
        set(changed.names) - set(default.names),
        set(default.names) - set(changed.names),
    )
    assert added, "a new window adds features"
    assert all(name.endswith("_14d") for name in added), added
    assert removed, "a dropped window removes features"
    assert all(name.endswith("_7d") for name in removed), removed
    assert {name.replace("_14d", "_7d") for name in added} == removed
    assert {s.window_days for s in changed.specs if s.name in added} == {14}


def test_catalog_hash_follows_the_definition_rules() -> None:
    """Same params, same hash; other repayment rules or money thresholds, another hash."""
    for segment in ("merchant", "consumer"):
        base = definitions(segment, PARAMS).catalog
        assert definitions(segment, PARAMS).catalog.hash == base.hash
        stricter = replace(PARAMS, rules=replace(PARAMS.rules, tolerance=0.0))
        assert definitions(segment, stricter).catalog.names == base.names
        assert definitions(segment, stricter).catalog.hash != base.hash
    richer = replace(PARAMS, consumer_low_balance_share=0.5)
    assert (
        definitions("consumer", richer).catalog.hash != definitions("consumer", PARAMS).catalog.hash
    )


def test_feature_params_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="windows"):
        replace(PARAMS, windows=(0, 30))
    with pytest.raises(ValueError, match="margin"):
        replace(PARAMS, merchant_net_margin=1.5)
