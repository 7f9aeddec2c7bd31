"""The evaluation report: one self-contained HTML page with plots and a model card.

Written for a risk committee: the verdict and headline figures first (model beside the scorecard
baseline and the true-PD ceiling), then the acceptance checks, the plots, the model card and the
tables. Plots are PNGs embedded as base64, so the page opens anywhere without other files.

The page is rendered from the jinja2 templates in ``templates/`` with autoescape on: every
string that reaches the page (feature names, descriptions, check names, extra sections) is
escaped, and no HTML is built in Python.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
import polars as pl
import polars.selectors as cs

# metrics.json key -> column title: "test" is the model on the test slice.
WHO = {
    "test": "LightGBM",
    "baseline": "WoE scorecard",
    "additive": "additive LightGBM",
    "ceiling": "true PD (ceiling)",
}
# model_card.json "performance" key -> title.
CARD_WHO = {
    "model": "LightGBM",
    "baseline": "WoE scorecard",
    "additive": "additive LightGBM",
    "ceiling": "true PD (ceiling)",
}
PLOTS = ("roc", "ks", "calibration", "score_distribution", "importance", "by_month")
SLICES = ("train", "valid", "test")
TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows, computed by the evaluate stage.

    ``test`` holds one row per test loan with ``bad``, ``pd``, ``baseline_pd``, ``score``,
    ``band`` and optionally ``true_pd``; ``tables`` the named evaluation tables (``gains``,
    ``by_band``, ``by_month``, ``calibration``, ``csi``, ``importance``); ``bands`` the score
    bands as (name, label, min, max).
    """

    segment: str
    metrics: dict
    card: dict
    test: pl.DataFrame
    tables: dict[str, pl.DataFrame]
    bands: list[tuple[str, str, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """An extra report section, after the standard ones: plain text, escaped by the template.

    ``text`` is one paragraph; ``table`` (optional) is shown under it, inside a ``<details>``
    whose summary is ``summary`` when ``collapsed``.
    """

    title: str
    text: str
    table: pl.DataFrame | None = None
    collapsed: bool = False
    summary: str = "Show the table"


def fmt(value: object) -> str:
    """A table cell: a dash for missing values, 4 decimals (or thousands) for floats."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@cache
def environment() -> jinja2.Environment:
    """The template environment: templates from the package, autoescape on, strict names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = fmt
    env.filters["num"] = format
    return env


def render_plots(inputs: ReportInputs) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by file stem."""
    from models import evaluate as ev
    from pipeline.reporting import plots

    test = inputs.test
    y = test["bad"].to_numpy()
    pds = {"model": test["pd"].to_numpy(), "baseline": test["baseline_pd"].to_numpy()}
    if "true_pd" in test.columns:
        pds["true_pd"] = test["true_pd"].to_numpy()
    calibration = {
        "model": inputs.tables["calibration"],
        "baseline": ev.calibration_bins(y, pds["baseline"]),
    }
    if "true_pd" in pds:
        calibration["true_pd"] = ev.calibration_bins(y, pds["true_pd"])
    return {
        "roc": plots.roc_plot(y, pds),
        "ks": plots.ks_plot(y, test["score"].cast(pl.Float64).to_numpy()),
        "calibration": plots.calibration_plot(calibration),
        "score_distribution": plots.score_distribution_plot(
            test["score"].to_numpy(), y, inputs.bands
        ),
        "importance": plots.importance_plot(inputs.tables["importance"]),
        "by_month": plots.by_month_plot(inputs.tables["by_month"]),
    }


def headline(metrics: dict) -> pl.DataFrame:
    """The headline measures (rows) of each model present in the metrics (columns), formatted.

    Cross-validated metrics (with ``se``) read "mean ± SE"; a fold's loan count has no SE.
    """
    measures = ("auc", "gini", "ks", "brier", "ece", "mean_pd", "bad_rate", "count")
    se = metrics.get("se", {})

    def cell(key: str, measure: str) -> str:
        value = fmt(metrics[key][measure])
        if key in se and measure != "count":
            return f"{value} ± {fmt(se[key][measure])}"
        return value

    return pl.DataFrame(
        {
            "measure": list(measures),
            **{
                title: [cell(key, m) for m in measures]
                for key, title in WHO.items()
                if key in metrics
            },
        }
    )


def card_slices(card: dict) -> pl.DataFrame:
    """The model card's data slices: issue months, loans, bads and bad rate per slice."""
    slices = card["data"]["slices"]
    rows = [
        {
            "slice": s,
            "issue months": f"{slices[s]['first_month']} – {slices[s]['last_month']}",
            "loans": slices[s]["loans"],
            "bads": slices[s]["bads"],
            "bad rate": slices[s]["bads"] / max(slices[s]["loans"], 1),
        }
        for s in SLICES
        if s in slices
    ]
    schema = {"slice": pl.String, "issue months": pl.String, "loans": pl.Int64}
    schema |= {"bads": pl.Int64, "bad rate": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def standard_sections(tables: dict[str, pl.DataFrame], metrics: dict) -> list[Section]:
    """The evaluate stage's own extra sections: the cut-off strategy and the scorecard points.

    ``tables`` needs ``cutoffs`` and ``scorecard_points`` (and, cross-validated, ``cv_folds``);
    ``metrics`` the scorecard's description (``metrics["scorecard"]["description"]``).
    """
    cv = "cv" in metrics
    sections = [
        Section(
            title=(
                "Cut-off strategy (out-of-fold scores, first repeat)"
                if cv
                else "Cut-off strategy (out-of-time test slice)"
            ),
            text=(
                "For each score cut-off: the share approved, the bad rate among the approved "
                "and the total limit granted (limits as if approved, knock-outs applied)."
                + (
                    " Every labelled loan is scored by a fold model that never saw it; the "
                    "limits are the registered model's."
                    if cv
                    else ""
                )
            ),
            table=tables["cutoffs"],
        ),
        Section(
            title="Scorecard baseline: points per bin",
            text=(
                f"{metrics['scorecard']['description']}. An applicant's points add up to the "
                "card's score on the model's scale, before calibration; scorecard_points.csv "
                "has the same table."
            ),
            table=tables["scorecard_points"].with_columns(pl.col("woe", "points", "iv").round(2)),
            collapsed=True,
            summary="Show the points table",
        ),
    ]
    if cv and "cv_folds" in tables:
        sections.append(
            Section(
                title="Cross-validation: every held-out fold",
                text=(
                    "The metrics of each model on each held-out fold of each repeat, from which "
                    f"the means and SEs above come ({metrics['cv']['se_rule']}); cv_folds.csv "
                    "has the same table."
                ),
                table=tables["cv_folds"].with_columns(cs.float().round(4)),
                collapsed=True,
                summary="Show the folds",
            )
        )
    return sections


def render_html(
    inputs: ReportInputs, plots: dict[str, bytes], sections: Sequence[Section] = ()
) -> str:
    """The report page; ``sections`` are added at the end, after the standard tables."""
    m = inputs.metrics
    card = inputs.card
    performance = ", ".join(
        f"{CARD_WHO.get(who, who)} AUC {fmt(v['auc'])} / ECE {fmt(v['ece'])}"
        for who, v in card["performance"].items()
    )
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            segment=inputs.segment,
            metrics=m,
            card=card,
            tables=inputs.tables,
            failed=[k for k, c in m["checks"].items() if not c["passed"]],
            headline=headline(m),
            card_slices=card_slices(card),
            dimensions=", ".join(f"{d} {n}" for d, n in card["features"]["by_dimension"].items()),
            performance=performance,
            images={name: base64.b64encode(png).decode("ascii") for name, png in plots.items()},
            sections=list(sections),
        )
    )


def write_report(folder: Path, inputs: ReportInputs, sections: Sequence[Section] = ()) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``folder``; return the report's path.

    ``sections`` are appended to the page, for sections other stages own (a cut-off strategy
    table, for instance); their text and tables are escaped. Nothing is written outside
    ``folder``: the caller publishes it.
    """
    pngs = render_plots(inputs)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        (folder / "plots" / f"{name}.png").write_bytes(png)
    path = folder / "report.html"
    path.write_text(render_html(inputs, pngs, sections), encoding="utf-8")
    return path
