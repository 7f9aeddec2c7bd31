"""The one atomic publish: a failure while filling leaves the previous output and no temporary."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from registry_world import private_world

from pipeline import storage
from pipeline.storage import Layout, publish_file, publishing, write_json


class Boom(RuntimeError):
    """An injected failure."""


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_folder_publish_replaces_in_one_piece(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with publishing(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with publishing(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert _tree(target) == {"b.txt": b"two"}
    assert _temporaries(tmp_path) == []


def test_failure_mid_fill_keeps_the_previous_folder_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with publishing(target) as tmp:
        (tmp / "a.txt").write_text("one")

    def fill_half() -> None:
        with publishing(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise Boom

    with pytest.raises(Boom):
        fill_half()
    assert _tree(target) == {"a.txt": b"one"}
    assert _temporaries(tmp_path) == []


def test_failure_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_json({"v": 1}, target)

    def half(path: Path) -> None:
        path.write_text('{"v": ')
        raise Boom

    with pytest.raises(Boom):
        publish_file(target, half)
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert _temporaries(tmp_path) == []


def test_a_killed_run_s_temporaries_are_swept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (tmp_path / ".out-abc123").mkdir()
    (tmp_path / ".out-abc123" / "partial").write_text("x")
    (tmp_path / ".other-keep").mkdir()  # another target's temporary is not ours to remove
    with publishing(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert _temporaries(tmp_path) == [".other-keep"]


def test_second_lock_holder_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with storage.exclusive_lock(lock), pytest.raises(storage.Locked):
        storage.exclusive_lock(lock).__enter__()


@pytest.fixture
def world(trained_world, tmp_path: Path):
    return private_world(trained_world, tmp_path)


def _fails_and_keeps(folder: Path, stage, world) -> None:
    """Running ``stage`` raises Boom and leaves ``folder`` as it was, with no temporary."""
    before = _tree(folder)
    assert before
    with pytest.raises(Boom):
        stage.run(world, "merchant")
    assert _tree(folder) == before
    assert _temporaries(folder.parent) == []


def test_train_failing_mid_folder_keeps_the_previous_model(world, monkeypatch) -> None:
    from pipeline.artifacts import AdditiveReference
    from pipeline.stages import train

    def boom(*args: object) -> None:
        raise Boom

    monkeypatch.setattr(AdditiveReference, "save", boom)
    _fails_and_keeps(Layout(world.data_dir).model("merchant"), train, world)


def test_evaluate_failing_mid_report_keeps_the_previous_report(world, monkeypatch) -> None:
    from pipeline import reporting
    from pipeline.stages import evaluate

    def boom(out: Path, *args: object, **kwargs: object) -> None:
        assert (out / "metrics.json").exists()  # the CSVs and metrics are already written
        raise Boom

    monkeypatch.setattr(reporting, "write_report", boom)
    folder = Layout(world.data_dir).report("merchant")
    _fails_and_keeps(folder, evaluate, world)
    assert pl.read_csv(folder / "gains.csv").height > 0
