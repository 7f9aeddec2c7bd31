"""Commands that use the champion: ``score`` a book, and ``demo``, which runs every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from pipeline import keep_freed_memory
from pipeline.cli.common import (
    AsOfOption,
    ClusterOption,
    DataOption,
    ParamsOption,
    SegmentChoice,
    SegmentOption,
    app,
    console,
    on_cluster,
    out,
    parse_date,
    running,
    segments_for,
    settings_for,
)
from pipeline.cli.data import features, generate, validate
from pipeline.cli.modelling import evaluate, promote_segments, register, train


def _worst_csi(drift: dict, n: int = 5) -> str:
    csi = drift.get("feature_csi", {})
    top = sorted(csi.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{name} {value:.2f}" for name, value in top) or "-"


@app.command()
def score(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    as_of: AsOfOption = None,
    model_uri: Annotated[
        str | None,
        typer.Option(help="Model to use (default models:/longtail-<segment>@champion)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rescore a date that is already done.")] = False,
    drift_fail_on: Annotated[
        str | None,
        typer.Option(
            "--drift-fail-on",
            help="Which drift alert exits 3: score, any or never (default: params.yaml drift).",
        ),
    ] = None,
    cluster: ClusterOption = None,
) -> None:
    """Batch-score every consented entity at a date with the champion model.

    ``--segment all`` scores the segments of params.yaml ``scoring.segments`` that the validated
    data holds. Exit codes:
    0 done (or already done), 1 error (nothing published), 3 drift alert (scores
    published, manifest says alert; see params.yaml drift). With a ``challenger`` alias on
    another version, one more line compares it with the champion on the same book
    (challenger.html in the scores folder).
    """
    keep_freed_memory()  # scoring builds features: before polars is imported
    from pipeline.batch import DRIFT_EXIT_CODE
    from pipeline.challenger import summary_line
    from pipeline.config import DriftParams
    from pipeline.stages import score as stage

    date = parse_date(as_of)
    if model_uri is not None and segment is SegmentChoice.all:
        raise typer.BadParameter("--model-uri needs a single --segment")
    choices = get_args(DriftParams.model_fields["fail_on"].annotation)
    if drift_fail_on is not None and drift_fail_on not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}; got {drift_fail_on!r}")
    with running("score", quiet=True):
        settings = on_cluster(settings_for(params, data), cluster)
    present = segments_for(segment, params, data, "score")
    # `all` scores the segments of params.yaml scoring.segments that the data holds.
    chosen = (
        [s for s in stage.segments(settings) if s in present]
        if segment is SegmentChoice.all
        else present
    )
    alerts = []
    for seg in chosen:
        with running(f"score {seg}"):
            manifest = stage.run(settings, seg, date, model_uri, force=force)
        state = "already done, skipped" if manifest.get("skipped") else "written"
        drift = manifest.get("drift", {})
        out.print(
            f"  {seg} as of {manifest['as_of']}: {manifest['rows_out']:,} scores with "
            f"{manifest['model_name']} v{manifest['model_version']} ({state}); drift "
            f"{drift.get('status', 'n/a')} (score PSI {manifest['score_psi_vs_training']:.3f})"
        )
        compared = summary_line(manifest.get("challenger"))
        if compared:
            out.print(f"    {compared}")
        if drift.get("status") in {"warning", "alert"}:
            console.print(
                f"[{'red' if drift['status'] == 'alert' else 'yellow'}]drift {drift['status']}"
                f"[/] {seg}: score PSI {drift['score_psi']:.3f} ({drift['score_status']}); "
                f"feature CSI over warning {len(drift['features_warning'])}, over alert "
                f"{len(drift['features_alert'])}; highest: {_worst_csi(drift)} "
                "(all in manifest.json)"
            )
        if stage.fails_run(settings, manifest, drift_fail_on):
            alerts.append(seg)
    if alerts:
        console.print(f"[red]drift alert[/] in {', '.join(alerts)}: exit {DRIFT_EXIT_CODE}")
        raise typer.Exit(DRIFT_EXIT_CODE)


@app.command()
def demo(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
) -> None:
    """Run the whole pipeline on the small synthetic world in params.yaml."""
    ctx = {"params": params, "data": data}
    generate(**ctx)
    validate(**ctx)
    features(**ctx, segment=SegmentChoice.all, as_of=None)
    train(**ctx, segment=SegmentChoice.all)
    evaluate(**ctx, segment=SegmentChoice.all)
    register(**ctx, segment=SegmentChoice.all, promote_=False)
    # The gate decides; on a refusal the demo goes on scoring with the existing champion.
    promote_segments(params, data, SegmentChoice.all, force=False)
    settings = settings_for(params, data)
    from pipeline import registry
    from pipeline.batch import DRIFT_EXIT_CODE

    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    for seg in segments_for(SegmentChoice.all, params, data, "demo"):
        if registry.version_by_alias(seg, registry.CHAMPION) is None:
            console.print(f"[yellow]no champion for {seg}[/]: the gate refused; not scored")
            continue
        try:
            score(**ctx, segment=SegmentChoice(seg), as_of=None, model_uri=None, force=True)
        except typer.Exit as exc:
            if exc.exit_code != DRIFT_EXIT_CODE:  # a drift alert is reported; the demo goes on
                raise
    root = settings.data_dir
    out.print(
        f"\n[bold]Done.[/]\n  scores:   {root}/scores/<segment>/as_of=<date>/scores.parquet\n"
        f"  reports:  {root}/reports/<segment>/report.html\n"
        f"  registry: uv run mlflow ui --backend-store-uri {settings.mlflow.tracking_uri}"
    )
