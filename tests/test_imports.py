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


def _run(code: str) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_allocator_setting_is_only_for_feature_commands() -> None:
    """`import pipeline` (and the CLI) leave jemalloc alone; keep_freed_memory sets it in time.

    The setting must reach the environment before polars is imported, or jemalloc never sees it.
    """
    code = "import os, pipeline.cli; print(os.environ.get('_RJEM_MALLOC_CONF'))"
    assert _run(code) == "None"
    code = (
        "import os, pipeline; ok = pipeline.keep_freed_memory(); import polars; "
        "print(ok, os.environ['_RJEM_MALLOC_CONF'].endswith(pipeline.JEMALLOC_CONF))"
    )
    assert _run(code) == "True True"
    code = "import polars, pipeline; print(pipeline.keep_freed_memory())"
    assert _run(code) == "False"


def _pipeline_imports() -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports (anywhere in the file, lazy imports too)."""
    import ast

    modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (REPO / "pipeline").rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.add(node.module)
                edges |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_stages_do_not_import_each_other_or_the_cli() -> None:
    graph = _pipeline_imports()
    for module, edges in graph.items():
        if module.startswith("pipeline.stages."):
            assert not {e for e in edges if e.startswith("pipeline.stages.")}, module
        if not module.startswith("pipeline.cli"):
            assert not {e for e in edges if e.startswith("pipeline.cli")}, module
