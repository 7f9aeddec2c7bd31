"""The evaluation report: a self-contained HTML page."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def write_report(
    path: Path, *, segment: str, metrics: dict, gains: pl.DataFrame, test: pl.DataFrame
) -> None:
    """Write the segment's out-of-time evaluation as one HTML file."""
    rows = [
        {"measure": k, "model": v, "true_pd_ceiling": metrics.get("ceiling", {}).get(k)}
        for k, v in metrics["test"].items()
    ]
    headline = pl.DataFrame(
        rows, schema={"measure": pl.String, "model": pl.Float64, "true_pd_ceiling": pl.Float64}
    )
    by_band = (
        test.with_columns(pl.col("bad").cast(pl.Float64))
        .group_by("band")
        .agg(
            pl.len().alias("loans"),
            pl.col("pd").mean().alias("predicted"),
            pl.col("bad").mean().alias("observed"),
        )
        .sort("band")
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8">
<title>longtail {segment} model report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}</style>
</head><body>
<h1>longtail — {html.escape(segment)} model, out-of-time test</h1>
<p>Score PSI train vs test: {metrics["score_psi_train_test"]:.4f}</p>
<h2>Headline metrics</h2>{_table(headline)}
<h2>Gains by decile (riskiest first)</h2>{_table(gains)}
<h2>Predicted vs observed default rate by score range</h2>{_table(by_band)}
</body></html>"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(path)
