"""Record what each stage touches while it runs: data paths, files written, params keys read.

The shared session fixtures run every stage through :meth:`Trace.run`, so the record of the
whole chain costs no extra run. While a stage runs:

- every :class:`pipeline.storage.Layout` accessor records the path it hands out (stages find
  files only through Layout);
- the data folder is snapshotted before and after: what changed is what the stage wrote;
- attribute access on the settings objects (and ``model_dump`` of a section) records the
  params.yaml keys read, by their dotted path.

tests/test_dvc_truth.py compares the record with dvc.yaml and params.yaml.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest

from pipeline.config import Settings
from pipeline.storage import Layout


@dataclass
class StageRecord:
    """What one DVC stage (e.g. ``train@merchant``) touched, and the sections it declared."""

    touched: set[Path] = field(default_factory=set)
    written: set[Path] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    declared: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)  # params paths that hold a settings object
    data_dir: Path | None = None

    def relative(self, paths: set[Path]) -> set[str]:
        """Paths as dvc.yaml writes them: under ``data/``."""
        assert self.data_dir is not None
        return {f"data/{p.relative_to(self.data_dir).as_posix()}" for p in paths}


def _snapshot(root: Path) -> dict[Path, tuple[int, int, int]]:
    if not root.exists():
        return {}
    return {
        p: (s.st_mtime_ns, s.st_size, s.st_ino)
        for p in root.rglob("*")
        if p.is_file() and (s := p.stat())
    }


def _settings_paths(settings: Settings) -> tuple[dict[int, str], set[str]]:
    """id of every settings object -> its dotted path in params.yaml ('' for the root).

    Also the paths of dicts of settings objects (``limits``): like a section, reading one says
    nothing about which of its keys are read.
    """
    paths: dict[int, str] = {}
    containers: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, pydantic.BaseModel):
            paths[id(value)] = path
            for name in type(value).model_fields:
                walk(value.__dict__[name], f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            if any(isinstance(item, pydantic.BaseModel) for item in value.values()):
                containers.add(path)
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, path)

    walk(settings, "")
    return paths, containers


class Trace:
    """Stage records of one session's chain, by DVC stage name."""

    def __init__(self) -> None:
        self.stages: dict[str, StageRecord] = {}
        self._current: StageRecord | None = None

    @contextmanager
    def _recording(self, settings: Settings) -> Iterator[None]:
        paths, containers = _settings_paths(settings)
        record = self._current
        assert record is not None
        record.sections |= set(paths.values()) | containers

        def key(obj: object, name: str) -> None:
            path = paths.get(id(obj))
            if path is not None and name in type(obj).model_fields:
                record.keys.add(f"{path}.{name}" if path else name)

        def getattribute(obj: object, name: str) -> Any:
            key(obj, name)
            return object.__getattribute__(obj, name)

        dump = pydantic.BaseModel.model_dump

        def model_dump(obj: pydantic.BaseModel, *args: Any, **kwargs: Any) -> Any:
            path = paths.get(id(obj))
            if path is not None:
                record.keys.add(f"{path}.*" if path else "*")
            return dump(obj, *args, **kwargs)

        depth = [0]  # only the outermost accessor counts (metrics() calls report())

        def recorded(accessor: Callable[..., Path]) -> Callable[..., Path]:
            @functools.wraps(accessor)
            def wrapper(*args: Any, **kwargs: Any) -> Path:
                depth[0] += 1
                try:
                    path = accessor(*args, **kwargs)
                finally:
                    depth[0] -= 1
                if depth[0] == 0:
                    record.touched.add(path)
                return path

            return wrapper

        with pytest.MonkeyPatch.context() as patch:
            for name, member in list(vars(Layout).items()):
                if isinstance(member, property):
                    patch.setattr(Layout, name, property(recorded(member.fget)))
                elif callable(member) and not name.startswith("_"):
                    patch.setattr(Layout, name, recorded(member))
            patch.setattr(pydantic.BaseModel, "__getattribute__", getattribute, raising=False)
            patch.setattr(pydantic.BaseModel, "model_dump", model_dump)
            yield

    def run(
        self,
        stage: str,
        function: Callable[..., Any],
        settings: Settings,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Run a stage function under the recorder, adding to ``stage``'s record."""
        record = self.stages.setdefault(stage, StageRecord(data_dir=Path(settings.data_dir)))
        record.declared |= set(getattr(function, "params", ()))
        before = _snapshot(record.data_dir)
        self._current = record
        try:
            with self._recording(settings):
                result = function(settings, *args, **kwargs)
        finally:
            self._current = None
            after = _snapshot(record.data_dir)
            record.written |= {
                p for p in before.keys() | after.keys() if before.get(p) != after.get(p)
            }
        return result


def dvc_stages(repo: Path) -> dict[str, dict]:
    """dvc.yaml's stages as dvc expands them: ``name@item`` for each item of a ``foreach``.

    A ``foreach`` may name a params.yaml list (``${scoring.segments}``), as dvc's templating
    reads it from params.yaml.
    """
    import re

    import yaml

    spec = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages: dict[str, dict] = {}
    for name, stage in spec.items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        items = stage["foreach"]
        if isinstance(items, str):
            reference = re.fullmatch(r"\$\{([\w.]+)\}", items.strip())
            assert reference, f"stage {name}: foreach {items!r} is not a ${{params.key}}"
            items = functools.reduce(lambda node, key: node[key], reference[1].split("."), params)
        for item in items:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            stages[f"{name}@{item}"] = yaml.safe_load(text)
    return stages
