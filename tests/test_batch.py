"""Batch scoring an operator can trust: no-op reruns, no partial output, the right model only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from registry_world import private_world, register_folder, renamed_scorer, scoring_date
from typer.testing import CliRunner

from pipeline import batch, inputs, registry, storage
from pipeline.cli import app
from pipeline.stages import score
from pipeline.storage import Layout

REPO = Path(__file__).resolve().parent.parent
SEGMENT = "merchant"


@pytest.fixture
def world(trained_world, tmp_path: Path):
    return private_world(trained_world, tmp_path)


def _target(settings) -> Path:
    return Layout(settings.data_dir).scores(SEGMENT, scoring_date(settings))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []


def test_manifest_and_rerun_noop(world) -> None:
    manifest = score.run(world, SEGMENT)
    target = _target(world)
    on_disk = json.loads((target / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["model_name"] == registry.model_name(SEGMENT)
    assert manifest["model_version"] == 1
    assert manifest["model_uri"] == f"models:/{registry.model_name(SEGMENT)}/1"  # pinned
    assert manifest["run_id"]
    assert manifest["rows_in"] == manifest["rows_out"] > 0
    assert manifest["excluded"]["no_consent"] > 0
    assert sum(manifest["score_distribution"]["bands"].values()) == manifest["rows_out"]
    assert manifest["drift"]["status"] in {"ok", "warning", "alert"}
    assert (
        set(manifest["drift"]["feature_csi"])
        == set(pl.read_parquet(target / "scores.parquet").columns) - set()
        or manifest["drift"]["feature_csi"]
    )

    before = (target / "scores.parquet").stat().st_mtime_ns
    again = score.run(world, SEGMENT)
    assert again["skipped"] is True
    assert (target / "scores.parquet").stat().st_mtime_ns == before
    forced = score.run(world, SEGMENT, force=True)
    assert "skipped" not in forced
    assert (target / "scores.parquet").stat().st_mtime_ns != before
    assert _leftovers(target.parent) == []


def test_crash_mid_write_leaves_no_partial_folder(world, monkeypatch) -> None:
    target = _target(world)

    def crash(manifest: dict, folder: Path) -> None:
        (folder / "manifest.json").write_text('{"half": ')  # a torn write, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(batch, "write_manifest", crash)
    with pytest.raises(OSError, match="disk full"):
        score.run(world, SEGMENT)
    assert not target.exists()
    assert _leftovers(target.parent) == []

    monkeypatch.undo()
    manifest = score.run(world, SEGMENT)
    assert "skipped" not in manifest
    assert pl.read_parquet(target / "scores.parquet").height == manifest["rows_out"]


def test_crash_in_forced_rerun_keeps_the_previous_output(world, monkeypatch) -> None:
    first = score.run(world, SEGMENT)
    target = _target(world)
    scores = pl.read_parquet(target / "scores.parquet")

    def crash(frame: pl.DataFrame, folder: Path) -> None:
        frame.head(3).write_parquet(folder / "scores.parquet")
        raise KeyboardInterrupt  # even an interrupt, not only an exception

    monkeypatch.setattr(batch, "write_scores", crash)
    with pytest.raises(KeyboardInterrupt):
        score.run(world, SEGMENT, force=True)
    assert json.loads((target / "manifest.json").read_text()) == first
    assert pl.read_parquet(target / "scores.parquet").equals(scores)
    assert _leftovers(target.parent) == []


def test_leftovers_of_a_killed_run_are_swept(world) -> None:
    target = _target(world)
    stale = target.parent / f".{target.name}-killed"
    stale.mkdir(parents=True)
    (stale / "scores.parquet").write_bytes(b"PAR1 torn")
    score.run(world, SEGMENT)
    assert _leftovers(target.parent) == []
    assert (target / "manifest.json").exists()


def test_second_concurrent_run_is_refused(world) -> None:
    lock = Layout(world.data_dir).scores_lock(SEGMENT)
    with storage.exclusive_lock(lock), pytest.raises(storage.Locked):
        score.run(world, SEGMENT)
    assert not _target(world).exists()


def test_mismatched_model_is_refused_before_scoring(world, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "legacy"
    version = register_folder(world, renamed_scorer(world, SEGMENT, folder), folder, "legacy")
    uri = f"models:/{registry.model_name(SEGMENT)}@legacy"

    def never(*args, **kwargs):
        raise AssertionError("features were built for a model that should have been refused")

    monkeypatch.setattr(inputs, "segment_features", never)
    with pytest.raises(batch.FeatureMismatch, match="legacy_feature"):
        score.run(world, SEGMENT, model_uri=uri)
    assert not _target(world).exists()

    params = tmp_path / "params.yaml"
    params.write_text(
        (REPO / "params.yaml").read_text().replace("sqlite:///mlflow.db", world.mlflow.tracking_uri)
    )
    result = CliRunner().invoke(
        app,
        [
            "score",
            "-p",
            str(params),
            "--data",
            str(world.data_dir),
            "-s",
            SEGMENT,
            "--model-uri",
            uri,
        ],
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "refusing to score" in text
    assert "Traceback" not in text
    assert version > 1
    assert not _target(world).exists()


def test_model_trained_under_other_repayment_rules_is_refused(world, monkeypatch) -> None:
    """Same feature names, other definitions: the catalog hash tells them apart."""
    stricter = world.label.model_copy(update={"partial_payment_tolerance": 0.0})
    changed = world.model_copy(update={"label": stricter})

    def never(*args, **kwargs):
        raise AssertionError("features were built for a model that should have been refused")

    monkeypatch.setattr(inputs, "segment_features", never)
    with pytest.raises(batch.FeatureMismatch, match="catalog hash"):
        score.run(changed, SEGMENT)
    assert not _target(world).exists()


def test_catalog_hash_check_accepts_models_saved_without_one() -> None:
    batch.check_catalog_hash(None, "abc", SEGMENT)
    batch.check_catalog_hash("abc", "abc", SEGMENT)
    with pytest.raises(batch.FeatureMismatch, match="expected the model's merchant catalog hash"):
        batch.check_catalog_hash("abc", "def", SEGMENT)


@pytest.mark.slow
def test_deploy_files_share_one_flock_and_run_the_batch(world, tmp_path: Path) -> None:
    import fcntl
    import os
    import shutil
    import subprocess

    deploy = REPO / "deploy"
    cron = [
        line
        for line in (deploy / "crontab").read_text().splitlines()
        if "flock" in line and not line.startswith("#")
    ]
    service = (deploy / "longtail-score.service").read_text()
    assert len(cron) == 1
    assert "ExecStart=/usr/bin/flock -n /run/lock/longtail-score.lock" in service
    assert "/usr/bin/flock -n /run/lock/longtail-score.lock /opt/longtail/deploy/" in cron[0]
    assert "OnCalendar=*-*-* 02:30:00 UTC" in (deploy / "longtail-score.timer").read_text()
    if shutil.which("flock") is None:
        pytest.skip("flock is not installed")

    # The wrapper under flock -n, as cron and systemd run it, against a private world.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".venv").symlink_to(REPO / ".venv")
    (home / "params.yaml").write_text(
        (REPO / "params.yaml")
        .read_text()
        .replace("sqlite:///mlflow.db", world.mlflow.tracking_uri)
        .replace("data_dir: data", f"data_dir: {world.data_dir}")
    )
    as_of = scoring_date(world).isoformat()
    lock = tmp_path / "longtail-score.lock"
    command = ["flock", "-n", str(lock), str(deploy / "longtail-score.sh"), as_of]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["LONGTAIL_HOME"] = str(home)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=120
        )
    assert busy.returncode == 1  # another run holds the lock: nothing scored
    assert not (world.data_dir / "scores").exists()
    done = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode in {0, batch.DRIFT_EXIT_CODE}, done.stdout + done.stderr
    for segment in ("merchant", "consumer"):
        folder = Layout(world.data_dir).scores(segment, scoring_date(world))
        assert (folder / "manifest.json").exists()


def test_as_of_after_the_log_is_refused(world) -> None:
    """Scoring past the end of the log would read missing data as inactivity."""
    log_end = inputs.observed_until(Layout(world.data_dir).validated)
    too_late = log_end + dt.timedelta(days=world.scoring.max_days_after_log + 1)
    with pytest.raises(ValueError, match="expected --as-of on or before"):
        score.run(world, SEGMENT, too_late)
    assert not Layout(world.data_dir).scores(SEGMENT, too_late).exists()


def test_drift_reference_is_the_whole_book_when_the_model_was_built(world) -> None:
    """Scoring the book on the reference date compares a population with itself: no drift.

    The reference is every consented entity the day after the log the model was built from,
    not the loan applicants it was trained on (who differ from the book in most features).
    """
    folder = Layout(world.data_dir).model(SEGMENT)
    info = json.loads((folder / "training.json").read_text())
    as_of = dt.date.fromisoformat(info["drift_reference"]["as_of"])
    assert as_of == scoring_date(world)
    book = inputs.scoring_spine(Layout(world.data_dir), SEGMENT, as_of, world.application)
    assert info["drift_reference"]["rows"] == book.height
    reference = json.loads((folder / "reference.json").read_text())
    assert reference["rows"] == book.height

    manifest = score.run(world, SEGMENT, as_of=as_of)
    assert manifest["drift"]["score_psi"] < 1e-9
    drifted = {k: v for k, v in manifest["drift"]["feature_csi"].items() if v >= 1e-9}
    assert not drifted
    assert manifest["drift"]["status"] == "ok"


def test_segment_all_scores_the_segments_of_params(world, tmp_path: Path) -> None:
    """`--segment all` (the scheduled job) scores params.yaml scoring.segments, no others."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data_dir"] = str(world.data_dir)
    params["mlflow"]["tracking_uri"] = world.mlflow.tracking_uri
    params["scoring"]["segments"] = ["consumer"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True))
    result = CliRunner().invoke(
        app, ["score", "--params", str(path), "--segment", "all", "--drift-fail-on", "never"]
    )
    assert result.exit_code == 0, result.output
    layout = Layout(world.data_dir)
    assert (layout.scores("consumer", scoring_date(world)) / "manifest.json").exists()
    assert not (world.data_dir / "scores" / "merchant").exists()
