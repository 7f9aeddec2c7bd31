"""Stage ``features``: point-in-time features of the training spine and of the whole book.

Without a date it writes the training features (one row per loan, at its issue date, with its
label) and the book snapshot (every consented entity at the end of the observed log: what the
train stage turns into the production drift reference). With a date it writes every consented
entity's features at that date.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from features import catalog
from pipeline import inputs
from pipeline.config import Sections, uses
from pipeline.storage import Layout, require, write_parquet

log = logging.getLogger(__name__)
PARAMS = ("features", "label")


@uses(*PARAMS)
def run(settings: Sections, segment: str, as_of: dt.date | None = None) -> tuple[Path, int]:
    """Write the segment's features; returns the path and rows of the main output."""
    layout = Layout(settings.data_dir)
    validated = require(layout.validated, "validate")
    if as_of is not None:
        return _write(
            layout, segment, inputs.scoring_spine(layout, segment, as_of), settings, as_of
        )
    book_as_of = inputs.observed_until(validated)
    _write(layout, segment, inputs.scoring_spine(layout, segment, book_as_of), settings, book=True)
    spine = inputs.training_spine(layout, segment, settings.label)
    return _write(layout, segment, spine, settings)


def _write(
    layout: Layout,
    segment: str,
    spine,
    settings: Sections,
    as_of: dt.date | None = None,
    *,
    book: bool = False,
) -> tuple[Path, int]:
    frame = inputs.segment_features(layout, segment, spine, settings.features)
    path = layout.book_features(segment) if book else layout.features(segment, as_of)
    write_parquet(frame, path)
    log.info(
        "features %s: %d rows x %d features -> %s",
        segment,
        frame.height,
        len(catalog.names(segment)),
        path,
    )
    return path, frame.height
