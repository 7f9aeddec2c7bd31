"""Stage ``validate``: data/raw into data/validated, bad rows and no-consent into quarantine."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from pipeline.config import Sections, uses
from pipeline.storage import Layout, require

log = logging.getLogger(__name__)
PARAMS = ("validation",)


@uses(*PARAMS)
def run(settings: Sections, mapping: Path | None = None) -> dict:
    """Validate every raw table; returns the summary also saved in data/quarantine.

    ``mapping`` is the source mapping file (default: data/raw/contract.yaml when it exists).
    """
    from pipeline.validate import validate

    layout = Layout(settings.data_dir)
    require(layout.raw, "generate")
    reference = settings.validation.reference_time or dt.datetime.now(dt.UTC)
    summary = validate(
        layout.raw,
        layout.validated,
        layout.quarantine,
        reference_time=reference,
        mapping=mapping,
        chunk_rows=settings.validation.chunk_rows,
    )
    log.info("validated: %s", summary)
    return summary
