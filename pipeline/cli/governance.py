"""Commands a model risk team runs: ``monitor`` (realised against expected performance)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import (
    DataOption,
    ParamsOption,
    SegmentChoice,
    SegmentOption,
    app,
    console,
    out,
    running,
    segments_for,
    settings_for,
)


def _figure(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


@app.command()
def monitor(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    fail_on_alert: Annotated[
        bool | None,
        typer.Option(
            "--fail-on-alert/--no-fail-on-alert",
            help="Exit 4 on an alert (default: params.yaml monitor.fail_on_alert).",
        ),
    ] = None,
) -> None:
    """Realised against expected performance of every scored cohort; vintages; roll rates.

    Writes data/monitor/<segment>/monitor.json and monitor.html. Exit codes: 0 done, 1 error
    (nothing published), 4 a cohort's realised and expected performance part beyond the
    params.yaml monitor tolerances (published; the summary names the cohorts).
    """
    from pipeline.stages import monitor as stage

    with running("monitor", quiet=True):
        settings = settings_for(params, data)
    alerts = []
    for seg in segments_for(segment, params, data, "monitor"):
        with running(f"monitor {seg}"):
            summary = stage.run(settings, seg)
        judged = [c for c in summary["cohorts"] if c["status"] != "too_few"]
        out.print(
            f"  {seg}: {len(summary['cohorts'])} scored cohort(s), {len(judged)} with enough "
            f"matured loans to judge; status {summary['status']}"
        )
        for c in judged:
            exp, real = c["expected"], c["realised"]
            out.print(
                f"    as of {c['as_of']}: {real['n']:,} matured loans, bad rate "
                f"{_figure(real['bad_rate'], '{:.2%}')} vs expected "
                f"{_figure(exp['bad_rate'], '{:.2%}')}; AUC {_figure(real['auc'], '{:.3f}')} vs "
                f"expected {_figure(exp['auc'], '{:.3f}')} ({c['status']})"
            )
        if stage.fails_run(settings, summary, fail_on_alert):
            alerts.append(seg)
        elif summary["status"] == "alert":
            console.print(f"[yellow]monitor alert[/] in {seg} (not failing the run)")
    if alerts:
        console.print(
            f"[red]monitor alert[/] in {', '.join(alerts)}: realised and expected part "
            f"(see data/monitor/<segment>/monitor.html): exit {stage.MONITOR_EXIT_CODE}"
        )
        raise typer.Exit(stage.MONITOR_EXIT_CODE)
