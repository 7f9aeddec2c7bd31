"""The shape of the features package: no import circle, the catalog a value of its params."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from features.definitions import POLICY_INPUTS, definitions
from tests.features_helpers import PARAMS

PACKAGE = Path(__file__).resolve().parents[1] / "features"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports (``from features import x`` included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found & modules - {_module(path)}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph as a path of modules, or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_features_has_no_import_cycle() -> None:
    graph = _graph()
    assert "features.catalog" in graph
    assert graph["features.merchant"], "the import graph should see merchant's imports"
    assert _cycle(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_catalog_knows_no_segment_definitions() -> None:
    imported = _graph()["features.catalog"]
    assert not imported & {
        "features.merchant",
        "features.consumer",
        "features.definitions",
        "features.build",
    }


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
    richer = replace(PARAMS, consumer_low_balance=250.0)
    assert (
        definitions("consumer", richer).catalog.hash != definitions("consumer", PARAMS).catalog.hash
    )


def test_feature_params_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="windows"):
        replace(PARAMS, windows=(0, 30))
    with pytest.raises(ValueError, match="margin"):
        replace(PARAMS, merchant_net_margin=1.5)
