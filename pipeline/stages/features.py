"""Stage ``features``: point-in-time features of the training spine and of the whole book.

Without a date it writes the training features (one row per loan, at its issue date, with its
label) and the book snapshot (every consented entity at the end of the observed log: what the
train stage turns into the production drift reference). With a date it writes every consented
entity's features at that date. The training spine carries each loan's principal and term; the
book and a dated snapshot carry the segment's reference loan (``application``), whose
instalment is at the product's rate (``limits``).

On ``compute.engine: dask`` the log is cut into entity partitions once for both spines and each
partition is built on a worker (:mod:`pipeline.compute.features`); the frames are the same.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import polars as pl

from pipeline import inputs
from pipeline.compute.engine import session
from pipeline.compute.features import segment_features, sharded
from pipeline.config import Sections, uses
from pipeline.storage import Layout, require, write_parquet

log = logging.getLogger(__name__)
PARAMS = ("features", "compute", "label", "limits", "application")


@uses(*PARAMS)
def run(settings: Sections, segment: str, as_of: dt.date | None = None) -> tuple[Path, int]:
    """Write the segment's features; returns the path and rows of the main output."""
    layout = Layout(settings.data_dir)
    validated = require(layout.validated, "validate")

    defined = inputs.feature_definitions(
        segment, settings.features, settings.label, settings.limits
    )
    with (
        session(settings.compute) as engine,
        sharded(engine, layout, segment) as shards,
    ):

        def write(spine: pl.DataFrame, path: Path) -> tuple[Path, int]:
            frame = segment_features(
                engine, layout, defined, spine, chunks=settings.features.chunks, shards=shards
            )
            write_parquet(frame, path)
            width = len(defined.catalog.names)
            log.info("features %s: %d rows x %d features -> %s", segment, frame.height, width, path)
            return path, frame.height

        if as_of is not None:
            book = inputs.scoring_spine(layout, segment, as_of, settings.application)
            return write(book, layout.features(segment, as_of))
        book_as_of = inputs.observed_until(validated)
        book = inputs.scoring_spine(layout, segment, book_as_of, settings.application)
        write(book, layout.book_features(segment))
        spine = inputs.training_spine(layout, segment, settings.label)
        return write(spine, layout.features(segment))
