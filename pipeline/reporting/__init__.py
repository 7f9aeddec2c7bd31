"""The evaluation report and the model card.

``write_report`` renders the self-contained ``report.html`` (and ``plots/*.png``) from jinja2
templates with autoescape on; ``standard_sections`` builds the evaluate stage's own extra
sections (cut-off strategy, scorecard points) as plain-text :class:`Section` records;
``model_card`` builds the ``model_card.json`` dict; ``fairness_section`` words the fairness
record.
"""

from __future__ import annotations

from pipeline.reporting.card import model_card
from pipeline.reporting.fairness import fairness_section
from pipeline.reporting.report import (
    ReportInputs,
    Section,
    render_html,
    render_plots,
    standard_sections,
    write_report,
)

__all__ = [
    "ReportInputs",
    "Section",
    "fairness_section",
    "model_card",
    "render_html",
    "render_plots",
    "standard_sections",
    "write_report",
]
