"""The evaluation report: one self-contained HTML page with plots and a model card.

Written for a risk committee: the verdict and headline figures first (model beside the scorecard
baseline and the true-PD ceiling), then the acceptance checks, the plots, the model card and the
tables. Plots are PNGs embedded as base64, so the page opens anywhere without other files.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

# metrics.json key -> column title: "test" is the model on the test slice.
WHO = {
    "test": "LightGBM",
    "baseline": "WoE scorecard",
    "additive": "additive LightGBM",
    "ceiling": "true PD (ceiling)",
}
CARD_WHO = {
    "model": "LightGBM",
    "baseline": "WoE scorecard",
    "additive": "additive LightGBM",
    "ceiling": "true PD (ceiling)",
}


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows, computed by the evaluate step.

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


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def table_html(frame: pl.DataFrame) -> str:
    """An HTML table of the frame, numbers formatted and text escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_plots(inputs: ReportInputs) -> dict[str, bytes]:
    """Every plot of the report as PNG bytes, by file stem."""
    from pipeline import plots

    test = inputs.test
    y = test["bad"].to_numpy()
    pds = {"model": test["pd"].to_numpy(), "baseline": test["baseline_pd"].to_numpy()}
    if "true_pd" in test.columns:
        pds["true_pd"] = test["true_pd"].to_numpy()
    from models import evaluate as ev

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


def _headline(metrics: dict) -> pl.DataFrame:
    measures = ("auc", "gini", "ks", "brier", "ece", "mean_pd", "bad_rate", "count")
    return pl.DataFrame(
        {
            "measure": list(measures),
            **{
                title: [_fmt(metrics[key][m]) for m in measures]
                for key, title in WHO.items()
                if key in metrics
            },
        }
    )


def _lift_sources(metrics: dict) -> str:
    """One sentence: how much of the lift over the scorecard is shapes, how much interactions."""
    lift = metrics.get("lift_sources")
    if not lift:
        return ""
    return (
        "<p>Lift over the scorecard: "
        f"{lift['shapes']:+.4f} AUC from an additive model of every feature (additive "
        "LightGBM, one feature per tree, minus the scorecard: finer shapes than binned WoE and "
        f"the characteristics the card leaves out) and {lift['interactions']:+.4f} from "
        "interactions (LightGBM minus the additive LightGBM).</p>"
    )


def _checks(metrics: dict) -> str:
    rows = []
    for name, c in metrics["checks"].items():
        mark = "pass" if c["passed"] else "fail"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_fmt(float(c['value']))}</td>"
            f"<td>{html.escape(c['rule'])} {_fmt(float(c['limit']))}</td>"
            f'<td class="{mark}">{mark}</td></tr>'
        )
    return (
        "<table><thead><tr><th>check</th><th>value</th><th>limit</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _card(card: dict, metrics: dict) -> str:
    slices = card["data"]["slices"]
    slice_rows = "".join(
        f"<tr><td>{s}</td><td>{slices[s]['first_month']} – {slices[s]['last_month']}</td>"
        f"<td>{_fmt(slices[s]['loans'])}</td><td>{_fmt(slices[s]['bads'])}</td>"
        f"<td>{_fmt(slices[s]['bads'] / max(slices[s]['loans'], 1))}</td></tr>"
        for s in ("train", "valid", "test")
        if s in slices
    )
    dims = ", ".join(f"{d} {n}" for d, n in card["features"]["by_dimension"].items())
    perf = ", ".join(
        f"{CARD_WHO.get(who, who)} AUC {_fmt(v['auc'])} / ECE {_fmt(v['ece'])}"
        for who, v in card["performance"].items()
    )
    limits = "".join(f"<li>{html.escape(item)}</li>" for item in card["limitations"])
    monitor = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in card["monitoring"].items()
    )
    model = card["model"]
    return f"""<dl class="card">
<dt>Purpose</dt><dd>{html.escape(card["purpose"])}</dd>
<dt>Data</dt><dd>Out-of-time slices by issue month (catalog {card["data"]["catalog_hash"][:12]}):
<table><thead><tr><th>slice</th><th>issue months</th><th>loans</th><th>bads</th>
<th>bad rate</th></tr></thead><tbody>{slice_rows}</tbody></table></dd>
<dt>Label</dt><dd>{html.escape(card["label"]["definition"])}.</dd>
<dt>Features</dt><dd>{card["features"]["count"]} features ({html.escape(dims)});
{card["features"]["monotone_constrained"]} carry a monotone constraint from the catalog,
verified on the fitted model ({len(metrics["monotone_violations"])} violations on test).</dd>
<dt>Model</dt><dd>{html.escape(model["algorithm"])}; {model["trees"]} trees;
{html.escape(model["calibration"])} calibration on the validation slice. Baseline:
{html.escape(model["baseline"])}.</dd>
<dt>Performance (test)</dt><dd>{html.escape(perf)}</dd>
<dt>Limitations</dt><dd><ul>{limits}</ul></dd>
<dt>Monitoring thresholds</dt><dd><ul>{monitor}</ul></dd>
</dl>"""


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:1.5em auto;
 padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #1f5fa8;padding-bottom:.2em;
 margin-top:1.6em}
.sub{color:#666;margin-top:0}
.tiles{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.tile{flex:1 1 140px;border:1px solid #dde;border-radius:6px;padding:.6em .8em;background:#f8f9fc}
.tile b{display:block;font-size:1.5em} .tile span{color:#666;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
td,th{border:1px solid #d6d6d6;padding:.2em .55em;text-align:right}
th{background:#f0f2f6} td:first-child,th:first-child{text-align:left}
td.pass{color:#1e8449;font-weight:bold} td.fail{color:#c0392b;font-weight:bold}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em} .grid img{width:100%}
img{max-width:100%} .wide img{width:100%}
dl.card dt{font-weight:bold;margin-top:.7em} dl.card dd{margin-left:1.2em}
"""


def render_html(
    inputs: ReportInputs,
    plots: dict[str, bytes],
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report page. ``extra_sections`` are (title, trusted HTML) pairs added at the end."""
    m = inputs.metrics
    seg = html.escape(inputs.segment)
    failed = [k for k, c in m["checks"].items() if not c["passed"]]
    verdict = (
        "All acceptance checks pass."
        if not failed
        else f"Checks not met: {html.escape(', '.join(failed))}."
    )
    ceiling = (
        f"<div class='tile'><b>{m['ceiling']['auc']:.3f}</b><span>true-PD AUC "
        "(ceiling)</span></div>"
        if "ceiling" in m
        else ""
    )
    if "auc_knowable" in m.get("ceiling", {}):
        ceiling += (
            f"<div class='tile'><b>{m['ceiling']['auc_knowable']:.3f}</b><span>AUC of what the "
            "log could reveal</span></div>"
        )
    tiles = f"""<div class="tiles">
<div class="tile"><b>{m["test"]["auc"]:.3f}</b><span>LightGBM AUC, test</span></div>
<div class="tile"><b>{m["baseline"]["auc"]:.3f}</b><span>scorecard AUC, test</span></div>
{ceiling}
<div class="tile"><b>{m["test"]["ks"]:.3f}</b><span>KS</span></div>
<div class="tile"><b>{m["test"]["ece"]:.4f}</b><span>expected calibration error</span></div>
<div class="tile"><b>{m["stability"]["score_psi_train_test"]:.3f}</b>
<span>score PSI train → test</span></div>
</div>"""
    t = inputs.tables
    img = {name: _img(png, name) for name, png in plots.items()}
    extra = "".join(f"<h2>{html.escape(title)}</h2>{body}" for title, body in extra_sections)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>longtail {seg} model report</title><style>{STYLE}</style></head><body>
<h1>longtail — {seg} PD model</h1>
<p class="sub">Out-of-time test on {m["test"]["count"]:,} loans issued
{html.escape(str(m["slices"].get("test", {}).get("first_month", "")))} –
{html.escape(str(m["slices"].get("test", {}).get("last_month", "")))};
{m["training"]["features"]} features, {m["training"]["trees"]} trees. {verdict}</p>
{tiles}
<h2>Headline metrics (test slice)</h2>{table_html(_headline(m))}{_lift_sources(m)}
<h2>Acceptance checks</h2>{_checks(m)}
<h2>Discrimination and calibration</h2>
<div class="grid">{img["roc"]}{img["ks"]}</div>
<div class="grid">{img["calibration"]}<div><h3>Predicted vs observed by score band</h3>
{table_html(t["by_band"])}</div></div>
<h2>Score distribution</h2><div class="wide">{img["score_distribution"]}</div>
<h2>Stability over time</h2><div class="wide">{img["by_month"]}</div>
<p>Score PSI train→valid {m["stability"]["score_psi_train_valid"]:.3f}, train→test
{m["stability"]["score_psi_train_test"]:.3f}. CSI of the top features (train → test):</p>
{table_html(t["csi"])}
<h2>What drives the score</h2><div class="wide">{img["importance"]}</div>
<h2>Model card</h2>{_card(inputs.card, m)}
<h2>Gains by decile (riskiest first)</h2>{table_html(t["gains"])}
<h2>Metrics by issue month</h2>{table_html(t["by_month"])}
{extra}
</body></html>"""


def write_report(
    folder: Path, inputs: ReportInputs, extra_sections: Sequence[tuple[str, str]] = ()
) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``folder``; return the report's path.

    ``extra_sections`` are (title, HTML) pairs appended to the page, for sections other stages
    own (a cut-off strategy table, for instance). Their HTML is inserted as given.
    """
    pngs = render_plots(inputs)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        (folder / "plots" / f"{name}.png").write_bytes(png)
    path = folder / "report.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_html(inputs, pngs, extra_sections), encoding="utf-8")
    tmp.replace(path)
    return path
