"""Stage ``monitor``: realised against expected performance of every scored cohort.

Each scores folder ``data/scores/<segment>/as_of=<date>`` is a cohort: the PDs given that day
promise a bad rate and an AUC (:func:`models.monitoring.expected`; the score stage saved the
whole book's in its manifest). A loan issued within ``monitor.issue_window_days`` from the
scoring date is judged by the PD its entity got that day; once its 12-month window has closed
the loan is labelled as training labels it (:func:`pipeline.inputs.training_spine`, the one
definition of bad), and the cohort's realised bad rate and AUC are set against what the same
loans' PDs promised. Loans not yet matured are counted as pending.

Beside the cohorts: vintage curves (share of each issue month's loans ever 30+ / 90+ days past
due by month on book) and roll rates (moves between days-past-due buckets month to month), from
the repayment log through :mod:`features.contract.repayments`.

The folder ``data/monitor/<segment>/`` (``monitor.json`` and ``monitor.html``) is published in
one rename. Not under ``data/reports/<segment>/``: the evaluate stage republishes that whole
folder in one rename, which would delete a monitor folder inside it, and DVC outputs may not
nest. An ``alert`` (a cohort whose realised and expected part beyond the tolerances) makes
``longtail monitor`` exit :data:`MONITOR_EXIT_CODE` after publishing, when
``monitor.fail_on_alert``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import jinja2
import polars as pl

from models import monitoring
from pipeline import batch, inputs
from pipeline.config import MonitorParams, Sections, uses
from pipeline.storage import Layout, publishing, require
from pipeline.storage import scored_dates as published_dates

log = logging.getLogger(__name__)
PARAMS = ("monitor", "label")
MONITOR_EXIT_CODE = 4  # after drift's 3: an alert, with the outputs published
JSON_FILE, HTML_FILE = "monitor.json", "monitor.html"
TEMPLATE = "monitor.html.j2"


def scored_dates(layout: Layout, segment: str) -> list[dt.date]:
    """The dates of the segment's finished scores folders (those holding a manifest)."""
    return [
        day
        for day in published_dates(layout, segment)
        if (layout.scores(segment, day) / batch.MANIFEST_FILE).exists()
    ]


def _cohort(
    layout: Layout, segment: str, as_of: dt.date, loans: pl.DataFrame, params: MonitorParams
) -> dict:
    """Expected (from the PDs given at ``as_of``) against realised, for one scored cohort."""
    target = layout.scores(segment, as_of)
    manifest = json.loads((target / batch.MANIFEST_FILE).read_text())
    scores = pl.read_parquet(target / batch.SCORES_FILE)
    decided = scores["decided_by"] if "decided_by" in scores.columns else None
    scores = scores.select("entity_id", "pd").with_columns(
        decided.alias("decided_by")
        if decided is not None
        else pl.lit("champion").alias("decided_by")
    )
    end = as_of + dt.timedelta(days=params.issue_window_days)
    issued = loans.filter((pl.col("as_of") >= as_of) & (pl.col("as_of") < end)).join(
        scores, on="entity_id", how="inner"
    )
    matured = issued.filter(pl.col("bad").is_not_null())
    pd_, bad = matured["pd"].to_numpy(), matured["bad"].to_numpy()
    exp, real = monitoring.expected(pd_), monitoring.realised(pd_, bad)
    verdict = monitoring.judge(
        exp,
        real,
        bad_rate_gap=params.bad_rate_gap,
        auc_gap=params.auc_gap,
        z_alert=params.z_alert,
        min_loans=params.min_loans,
    )
    by_decider = (
        matured.group_by("decided_by")
        .agg(
            pl.len().alias("loans"),
            pl.col("bad").sum().cast(pl.Int64).alias("bads"),
            pl.col("bad").mean().alias("bad_rate"),
            pl.col("pd").mean().alias("expected_bad_rate"),
        )
        .sort("decided_by")
    )
    return {
        "as_of": as_of.isoformat(),
        "model_version": manifest.get("model_version"),
        "book_expected": manifest.get("expected"),
        "loans_issued": issued.height,
        "pending": issued.height - matured.height,
        "expected": exp,
        "realised": real,
        **verdict,
        "by_decider": by_decider.to_dicts(),
    }


def _repayments(validated: Path, loans: pl.DataFrame) -> pl.DataFrame | None:
    path = validated / "repayments.parquet"
    if not path.exists():
        return None
    return pl.read_parquet(path).join(loans.select("loan_id"), on="loan_id", how="semi")


@uses(*PARAMS)
def run(settings: Sections, segment: str) -> dict:
    """Judge every scored cohort of ``segment``; build vintages and roll rates; publish.

    Returns the summary written to ``monitor.json``: ``status`` is ``alert`` when any cohort
    is, ``ok`` when at least one was judged and none is, ``too_few`` otherwise.
    """
    params = settings.monitor
    layout = Layout(settings.data_dir)
    validated = require(layout.validated, "validate")
    until = inputs.observed_until(validated)
    spine = inputs.training_spine(layout, segment, settings.label)
    loans = spine.select("loan_id", "entity_id", "as_of", "bad")
    cohorts = [_cohort(layout, segment, d, loans, params) for d in scored_dates(layout, segment)]
    if not cohorts:
        require(layout.scores_of(segment), "score")
    issued = spine.select("loan_id", pl.col("as_of").alias("issued_on"))
    repayments = _repayments(validated, issued)
    tolerance = settings.label.partial_payment_tolerance
    vintage = roll = None
    if repayments is not None:
        vintage = monitoring.vintage_curves(
            issued,
            repayments,
            observed_until=until,
            dpd_levels=params.vintage_dpd,
            max_months=params.months_on_book,
            tolerance=tolerance,
        )
        dpd = monitoring.dpd_by_month(
            issued,
            repayments,
            observed_until=until,
            max_months=params.months_on_book,
            tolerance=tolerance,
        )
        roll = monitoring.roll_rates(dpd, params.roll_buckets)
    statuses = {c["status"] for c in cohorts}
    status = "alert" if "alert" in statuses else ("ok" if "ok" in statuses else "too_few")
    summary = {
        "segment": segment,
        "observed_until": until.isoformat(),
        "status": status,
        "alerts": [c["as_of"] for c in cohorts if c["status"] == "alert"],
        "params": params.model_dump(mode="json"),
        "cohorts": cohorts,
        "vintage": None if vintage is None else vintage.to_dicts(),
        "roll_rates": None if roll is None else roll.to_dicts(),
        "roll_buckets": monitoring.bucket_labels(params.roll_buckets),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with publishing(layout.monitor(segment)) as tmp:
        (tmp / JSON_FILE).write_text(json.dumps(summary, indent=2, default=str))
        (tmp / HTML_FILE).write_text(render(summary))
    if status == "alert":
        log.error("monitor alert for %s: cohorts %s", segment, ", ".join(summary["alerts"]))
    return summary


def _pivot(rows: list[dict], index: str, column: str, value: str) -> tuple[list, list, dict]:
    """Row keys, column keys and {(row, column): value} of a long table, for the template."""
    rows_ = sorted({r[index] for r in rows})
    cols = sorted({r[column] for r in rows})
    return rows_, cols, {(r[index], r[column]): r[value] for r in rows}


def render(summary: dict) -> str:
    """The monitor page (HTML) of a :func:`run` summary."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "reporting" / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    vintages = {
        level: _pivot(summary["vintage"] or [], "cohort", "months_on_book", f"ever_{level}")
        for level in summary["params"]["vintage_dpd"]
    }
    labels = summary["roll_buckets"]
    rolls = {(r["from_bucket"], r["to_bucket"]): r["rate"] for r in summary["roll_rates"] or []}
    return env.get_template(TEMPLATE).render(
        s=summary, vintages=vintages, labels=labels, rolls=rolls
    )


@uses(*PARAMS)
def fails_run(settings: Sections, summary: dict, fail_on_alert: bool | None = None) -> bool:
    """Whether a summary fails ``longtail monitor`` (exit :data:`MONITOR_EXIT_CODE`).

    ``fail_on_alert``, else params.yaml ``monitor.fail_on_alert``.
    """
    fail = settings.monitor.fail_on_alert if fail_on_alert is None else fail_on_alert
    return fail and summary["status"] == "alert"
