"""Temporary bridge: the old ``(title, HTML)`` call of ``run_evaluate`` onto the Section API.

``pipeline/steps.py`` (owned by the stage split) still builds its two extra sections as HTML
strings. Until it calls ``write_report(folder, inputs, standard_sections(tables, metrics))``
itself, this bridge drops those strings and renders the same two sections from the data, so
no HTML reaches the page unescaped. Delete this module when the evaluate stage is wired in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipeline.reporting.report import ReportInputs, standard_sections
from pipeline.reporting.report import write_report as _write_report

__all__ = ["ReportInputs", "table_html", "write_report"]


def table_html(frame: pl.DataFrame) -> str:
    """Nothing: the bridge renders the tables from ``inputs.tables`` in the template."""
    del frame
    return ""


def write_report(
    folder: Path, inputs: ReportInputs, extra_sections: Sequence[tuple[str, str]] = ()
) -> Path:
    """The report with the standard sections; refuses any other (HTML) extra section."""
    sections = standard_sections(inputs.tables, inputs.metrics)
    expected = [s.title for s in sections]
    titles = [title for title, _ in extra_sections]
    if titles != expected:
        msg = f"extra sections {titles} are not the standard {expected}: pass Section records"
        raise NotImplementedError(msg)
    return _write_report(folder, inputs, sections)
