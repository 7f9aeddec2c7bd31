"""Batch scoring on an engine: the same :class:`~models.scorer.Scorer` per block of rows.

Every column the Scorer writes is a function of its row alone (the PD, score, band, limit and
reasons of one entity never read another's), so cutting the book into blocks, scoring each on a
worker and putting the blocks back in order gives the local frame exactly (tested).

The scorer travels as its saved files (the booster's own text file and the plain-data JSON,
the artifact the registry holds) and is loaded once per model in each worker: no pickle of a
live booster crosses the wire, and a worker scores with exactly the model the driver loaded
from the same files. The blocks and the files go in the tasks themselves (nothing is scattered
ahead), so a task whose worker died can run again elsewhere, within the scheduler's
``allowed-failures``.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import uuid
import warnings
from pathlib import Path

import polars as pl

from models.scorer import Scorer
from pipeline.compute.engine import Engine, gather

_LOADED: dict[str, Scorer] = {}  # per worker process: the scorers loaded, by their files' hash


def scorer_files(scorer: Scorer) -> dict[str, bytes]:
    """The scorer's saved files (name -> bytes): what a worker rebuilds it from."""
    with tempfile.TemporaryDirectory(prefix="longtail-scorer-") as tmp:
        scorer.save(Path(tmp))
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}


def _load(files: dict[str, bytes]) -> Scorer:
    """The scorer saved as ``files``, loaded once per process."""
    digest = hashlib.sha256(b"".join(files[name] for name in sorted(files))).hexdigest()
    if digest not in _LOADED:
        with tempfile.TemporaryDirectory(prefix="longtail-scorer-") as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            _LOADED[digest] = Scorer.load(Path(tmp))
    return _LOADED[digest]


def _score_block(
    files: dict[str, bytes], block: pl.DataFrame, reasons: bool, compiled: Path | None
) -> pl.DataFrame:
    return _load(files).score(block, reasons=reasons, compiled=compiled)


def score_book(
    engine: Engine,
    scorer: Scorer,
    frame: pl.DataFrame,
    *,
    reasons: bool = True,
    compiled: Path | None = None,
) -> pl.DataFrame:
    """``scorer.score(frame, reasons=reasons, compiled=compiled)``, on ``engine``: same frame.

    Dask: ``compute.partitions`` contiguous blocks of rows, each scored by a task with the
    scorer rebuilt from its files; the blocks come back in order. ``compiled`` (the compiled
    models' cache folder, or None for LightGBM's own predict) must be reachable by the workers.
    """
    scorer.check_columns(frame)
    if not engine.distributed or frame.height == 0:
        return scorer.score(frame, reasons=reasons, compiled=compiled)
    client = engine.client
    files = scorer_files(scorer)
    size = max(1, math.ceil(frame.height / engine.partitions))
    run = uuid.uuid4().hex[:8]  # fresh keys: a key still known to the scheduler is reused
    with warnings.catch_warnings():
        # "Sending large graph": the blocks are the work; they go in the tasks on purpose
        warnings.filterwarnings("ignore", message="Sending large graph")
        futures = [
            client.submit(
                _score_block,
                files,
                frame.slice(offset, size),
                reasons,
                compiled,
                key=f"longtail-score-{scorer.segment}-{i}-{run}",
                pure=False,
            )
            for i, offset in enumerate(range(0, frame.height, size))
        ]
    blocks = gather(engine, futures, f"scoring {frame.height:,} {scorer.segment} rows")
    return pl.concat(blocks)
