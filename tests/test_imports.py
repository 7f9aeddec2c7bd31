"""The generic top-level package names must resolve to this repository's packages."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["features", "models", "pipeline"])
def test_packages_import_from_this_repo(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == REPO / name


def test_dependency_direction() -> None:
    """features imports neither models nor pipeline; models does not import pipeline."""
    for package, forbidden in (("features", ("models", "pipeline")), ("models", ("pipeline",))):
        for path in (REPO / package).glob("*.py"):
            text = path.read_text()
            for other in forbidden:
                assert f"from {other}" not in text, f"{path} imports {other}"
                assert f"import {other}" not in text, f"{path} imports {other}"
