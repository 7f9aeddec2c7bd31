"""Commands that fit and judge models: ``train``, ``evaluate``, ``register``, ``promote``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import (
    ClusterOption,
    DataOption,
    ParamsOption,
    SegmentChoice,
    SegmentOption,
    app,
    on_cluster,
    out,
    running,
    segments_for,
    settings_for,
)


@app.command()
def train(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    cluster: ClusterOption = None,
) -> None:
    """Train a monotone-constrained, calibrated LightGBM model per segment (out-of-time).

    ``--cluster tcp://scheduler:8786`` (or params.yaml ``compute``) trains the booster with
    lightgbm.dask on a Dask cluster (within a documented tolerance of the local fit).
    """
    from pipeline.stages import train as stage

    for seg in segments_for(segment, params, data, "train"):
        with running(f"train {seg}"):
            info = stage.run(on_cluster(settings_for(params, data), cluster), seg)
        sl = info["slices"]
        out.print(
            f"  {seg}: {len(info['features'])} features, {info['best_iteration']} trees; "
            + ", ".join(
                f"{k} {v['loans']:,} loans/{v['bads']:,} bad" for k, v in sorted(sl.items())
            )
        )


@app.command()
def evaluate(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
) -> None:
    """Evaluate out of time (or cross-validated, split.mode cv); write metrics.json, report."""
    from pipeline.stages import evaluate as stage

    for seg in segments_for(segment, params, data, "evaluate"):
        with running(f"evaluate {seg}"):
            metrics = stage.run(settings_for(params, data), seg)
        t, se = metrics["test"], metrics.get("se", {}).get("test")  # se: cross-validated
        ceiling = metrics.get("ceiling", {}).get("auc")
        ceiling = "n/a" if ceiling is None else f"{ceiling:.3f}"
        auc, ks = (f"{t[k]:.3f}" + (f" ± {se[k]:.3f}" if se else "") for k in ("auc", "ks"))
        psi = "n/a (cv)" if se else f"{metrics['score_psi_train_test']:.3f}"
        out.print(
            f"  {seg}: {'cross-validated' if se else 'test'} AUC {auc} (true-PD ceiling "
            f"{ceiling}), KS {ks}, ECE {t['ece']:.4f}, score PSI {psi}; fairness flagged: "
            f"{', '.join(metrics.get('fairness', {}).get('flagged', [])) or 'none'}"
        )


@app.command()
def register(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    promote_: Annotated[
        bool,
        typer.Option("--promote", help="Then run the promotion gate (as `longtail promote`)."),
    ] = False,
) -> None:
    """Register the trained model in MLflow as a new version with the alias challenger."""
    from pipeline.stages import register as stage

    for seg in segments_for(segment, params, data, "register"):
        with running(f"register {seg}"):
            record = stage.run(settings_for(params, data), seg)
        out.print(f"  {record['model_name']} v{record['version']} @{record['alias']}")
    if promote_:
        promote(params=params, data=data, segment=segment, force=False)


def promote_segments(params: Path, data: Path | None, segment: SegmentChoice, force: bool) -> bool:
    """Run the gate per segment and print each decision; True when none was refused."""
    from pipeline.stages import promote as stage

    ok = True
    for seg in segments_for(segment, params, data, "promote"):
        with running(f"promote {seg}"):
            result = stage.run(settings_for(params, data), seg, force=force)
        decision, was = result["decision"], result["champion_version"]
        colour = {"refused": "red", "forced": "yellow"}.get(decision, "green")
        name = f"{result['model_name']} v{result['challenger_version']}"
        champion = "none" if was is None else f"v{was}"
        out.print(f"  {name}: [{colour}]{decision}[/] (champion was {champion})")
        for reason in result["reasons"]:
            out.print(f"    - {reason}")
        ok = ok and decision != "refused"
    return ok


@app.command()
def promote(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    force: Annotated[
        bool,
        typer.Option(help="Promote even if the gate refuses (recorded as 'forced' with reasons)."),
    ] = False,
) -> None:
    """Make the challenger champion only if it passes the gate; say why when it refuses.

    The challenger must match the champion's AUC (within params.yaml registry.auc_tolerance) on
    the same out-of-time rows, keep its monotone constraints and stay stable (score PSI). A
    refusal exits 1; every decision is recorded as tags in the registry.
    """
    if not promote_segments(params, data, segment, force):
        raise typer.Exit(1)
