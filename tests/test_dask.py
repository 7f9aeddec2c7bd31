"""The Dask engine gives the local results: features and scores bit-identical, training close.

One LocalCluster (2 worker processes, 1 thread each) serves the module, reached through its
address as an existing cluster would be. Its scheduler allows no worker death per task
(``allowed-failures: 0``), so the killed-worker test fails on the first death instead of
retrying on the restarted worker. Every test runs under an alarm: a hung distributed step
fails the test instead of the suite.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.slow  # a cluster's start and the small world's builds: minutes here

REPO = Path(__file__).resolve().parent.parent
SEGMENT = "merchant"
# distributed training vs local: out-of-time AUC (see pipeline/compute/training.py)
AUC_TOLERANCE = 0.02


@pytest.fixture(autouse=True)
def _alarm() -> Iterator[None]:
    """Fail a test that runs over 10 minutes (a hung collective, a lost scheduler)."""

    def expired(signum, frame):
        raise TimeoutError("test_dask: a distributed step ran over 600 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(600)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A LocalCluster's scheduler address: 2 workers x 1 thread, no retry after a death."""
    import dask
    from distributed import LocalCluster

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="2GB",
            dashboard_address=None,
        ) as local,
    ):
        yield local.scheduler_address


@pytest.fixture
def engine(validated_world, cluster: str) -> Iterator:
    from pipeline.compute.engine import session

    params = validated_world.compute.model_copy(
        update={"engine": "dask", "address": cluster, "partitions": 3, "timeout": 300}
    )
    with session(params) as opened:
        yield opened


@pytest.fixture(scope="module")
def local_features(validated_world) -> dict[str, pl.DataFrame]:
    """The merchant training and book features, built in this process."""
    from pipeline import inputs
    from pipeline.storage import Layout

    layout = Layout(validated_world.data_dir)
    defined = inputs.feature_definitions(
        SEGMENT, validated_world.features, validated_world.label, validated_world.limits
    )
    spines = {
        "training": inputs.training_spine(layout, SEGMENT, validated_world.label),
        "book": inputs.scoring_spine(
            layout, SEGMENT, inputs.observed_until(layout.validated), validated_world.application
        ),
    }
    return {
        name: inputs.segment_features(layout, defined, spine, chunks=1)
        for name, spine in spines.items()
    }


def test_features_on_dask_are_the_local_features(validated_world, engine, local_features) -> None:
    from pipeline import inputs
    from pipeline.compute import features as compute
    from pipeline.storage import Layout

    layout = Layout(validated_world.data_dir)
    defined = inputs.feature_definitions(
        SEGMENT, validated_world.features, validated_world.label, validated_world.limits
    )
    with compute.sharded(engine, layout, SEGMENT) as shards:
        assert len(shards.files) == 3
        assert shards.parts == 3
        end = inputs.observed_until(layout.validated)
        for name, spine in (
            ("training", inputs.training_spine(layout, SEGMENT, validated_world.label)),
            ("book", inputs.scoring_spine(layout, SEGMENT, end, validated_world.application)),
        ):
            built = compute.segment_features(
                engine, layout, defined, spine, chunks=1, shards=shards
            )
            assert_frame_equal(built, local_features[name])
            assert built.height > 1000
    leftovers = list(layout.features(SEGMENT).parent.glob(f".{SEGMENT}-shards-*"))
    assert leftovers == []  # the shards are removed when the block ends


def test_consumer_features_on_dask_are_the_local_features(validated_world, engine) -> None:
    """The other segment's definitions (balances, counterparties) partition the same way."""
    from pipeline import inputs
    from pipeline.compute import features as compute
    from pipeline.storage import Layout

    layout = Layout(validated_world.data_dir)
    settings = validated_world
    defined = inputs.feature_definitions(
        "consumer", settings.features, settings.label, settings.limits
    )
    spine = inputs.training_spine(layout, "consumer", validated_world.label)
    local = inputs.segment_features(layout, defined, spine, chunks=1)
    assert_frame_equal(compute.segment_features(engine, layout, defined, spine, chunks=1), local)


def _slices(settings, frame: pl.DataFrame, names: list[str]) -> dict:
    from models.split import assign_slices, complete_months

    months = complete_months(frame["issue_month"], frame["bad"].is_not_null())
    frame = frame.filter(pl.col("bad").is_not_null() & pl.col("issue_month").is_in(months))
    frame = frame.with_columns(assign_slices(pl.col("as_of"), months, settings.split).alias("s"))
    return {
        s: (
            frame.filter(pl.col("s") == s).select(pl.col(names).cast(pl.Float64)).to_numpy(),
            frame.filter(pl.col("s") == s)["bad"].to_numpy(),
        )
        for s in ("train", "valid", "test")
    }


def test_training_on_dask_is_within_tolerance_and_monotone(
    validated_world, engine, local_features
) -> None:
    import lightgbm as lgb

    from models import evaluate as ev
    from models.train import fit_booster, monotonicity_violations
    from pipeline import inputs
    from pipeline.compute import training as compute

    catalog = inputs.feature_definitions(
        SEGMENT, validated_world.features, validated_world.label, validated_world.limits
    ).catalog
    names = catalog.names
    monotone = [s.pd_monotone for s in catalog.specs]
    data = _slices(validated_world, local_features["training"], names)
    (xt, yt), (xv, yv), (xs, ys) = data["train"], data["valid"], data["test"]
    params = validated_world.model.train.model_copy(
        update={"learning_rate": 0.1, "max_rounds": 150, "early_stopping_rounds": 30}
    )
    kw = {"feature_names": names, "pd_monotone": monotone, "params": params}
    local = fit_booster(xt, yt, xv, yv, **kw)
    distributed = compute.fit_booster(engine, xt, yt, xv, yv, **kw)

    assert isinstance(distributed, lgb.Booster)
    assert distributed.feature_name() == names
    # the rounds are the local early stopping's (every training row is in the sample)
    assert distributed.current_iteration() == local.current_iteration()
    assert monotonicity_violations(distributed, xt, monotone) == []
    local_auc, dask_auc = ev.auc(ys, local.predict(xs)), ev.auc(ys, distributed.predict(xs))
    assert local_auc > 0.7
    assert abs(dask_auc - local_auc) <= AUC_TOLERANCE


def _scorer(settings, frame: pl.DataFrame):
    from models.calibrate import fit_calibrator
    from models.scorer import Scorer
    from models.train import fit_rounds
    from pipeline import inputs

    catalog = inputs.feature_definitions(
        SEGMENT, settings.features, settings.label, settings.limits
    ).catalog
    labelled = frame.filter(pl.col("bad").is_not_null())
    x = labelled.select(pl.col(catalog.names).cast(pl.Float64)).to_numpy()
    y = labelled["bad"].to_numpy()
    booster = fit_rounds(
        x,
        y,
        40,
        feature_names=catalog.names,
        pd_monotone=[s.pd_monotone for s in catalog.specs],
        params=settings.model.train,
    )
    return Scorer(
        segment=SEGMENT,
        specs=tuple(catalog.specs),
        booster=booster,
        calibrator=fit_calibrator(booster.predict(x, raw_score=True), y, "platt"),
        scaling=settings.scaling,
        policy=settings.limits[SEGMENT],
    )


def test_scores_on_dask_are_the_local_scores(validated_world, engine, local_features) -> None:
    from pipeline.compute import engine as compute
    from pipeline.compute.scoring import score_book

    scorer = _scorer(validated_world, local_features["training"])
    book = local_features["book"]
    for reasons in (True, False):
        local = scorer.score(book, reasons=reasons)
        assert_frame_equal(score_book(engine, scorer, book, reasons=reasons), local)
    assert local.height == book.height > 1000
    local_engine = compute.Engine(engine.params.model_copy(update={"engine": "local"}))
    assert_frame_equal(score_book(local_engine, scorer, book), scorer.score(book))


def _kill_on_features():
    """A worker plugin that kills its worker's process when a feature task starts."""
    from distributed import WorkerPlugin

    class KillOnFeatures(WorkerPlugin):
        name = KILLER

        def setup(self, worker) -> None:
            self.pid = os.getpid()

        def transition(self, key, start, finish, **kwargs) -> None:
            if finish == "executing" and str(key).startswith("longtail-features-"):
                os.kill(self.pid, signal.SIGKILL)

    return KillOnFeatures()


KILLER = "longtail-test-kill"


def test_a_killed_worker_fails_the_stage_in_one_line_and_writes_nothing(
    validated_world, cluster: str, tmp_path: Path
) -> None:
    from distributed import Client
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = tmp_path / "data"
    shutil.copytree(validated_world.data_dir / "validated", data / "validated")
    with Client(cluster, timeout=120) as client:
        client.register_plugin(_kill_on_features())
        try:
            result = CliRunner().invoke(
                app,
                [
                    "features",
                    "--params",
                    str(REPO / "params.yaml"),
                    "--data",
                    str(data),
                    "--segment",
                    SEGMENT,
                    "--cluster",
                    cluster,
                ],
            )
        finally:
            client.unregister_worker_plugin(KILLER)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "error in" in line]
    assert len(lines) == 1, result.output  # one line, however the terminal wraps
    assert "error in features merchant: expected every Dask task" in lines[0]
    assert "a worker died while running" in lines[0]
    assert "nothing was written" in lines[0]
    features = data / "features"
    assert not features.exists() or list(features.iterdir()) == []  # no output, no shards
