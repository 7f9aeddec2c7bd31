"""The ``longtail`` command line: one command per stage, plus ``demo`` that runs them all.

Every command calls the ``run`` of its stage module in :mod:`pipeline.stages`; heavy libraries
are imported inside the commands so ``--help`` stays fast. Errors a user can fix are reported on
one line with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.markup import escape

from pipeline import keep_freed_memory

app = typer.Typer(
    name="longtail",
    help="Credit scoring for long-tail lending from merchant and consumer transaction logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
INPUT_EXIT_CODE = 2  # a raw file that cannot be read as a table: the user fixes the file


class SegmentChoice(StrEnum):
    """Which segment(s) a command works on."""

    merchant = "merchant"
    consumer = "consumer"
    all = "all"


ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="The params file (every tunable).", show_default=True)
]
DataOption = Annotated[
    Path | None, typer.Option("--data", help="Data folder (overrides params.yaml data_dir).")
]
SegmentOption = Annotated[
    SegmentChoice,
    typer.Option("--segment", "-s", help="merchant, consumer or all (every segment present)."),
]


def _date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date as YYYY-MM-DD; got {value!r}") from None


AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", help="Snapshot date YYYY-MM-DD (default: end of the observed log)."),
]


def _segments(choice: SegmentChoice, params: Path, data: Path | None, command: str) -> list[str]:
    """The segments a command runs on: ``all`` is every segment the validated data holds.

    A lender brings the segments it has; a named segment it did not bring is a one-line error.
    """
    from pipeline.inputs import present_segments, require_segment
    from pipeline.storage import Layout

    with _stage(command, quiet=True):
        layout = Layout(_settings(params, data).data_dir)
        if choice is not SegmentChoice.all:
            return [require_segment(layout, choice.value)]
        present = list(present_segments(layout))
    for name in (s.value for s in SegmentChoice if s.value not in (*present, "all")):
        why = f"its tables were not in the raw data of {layout.validated.parent} (see validate)"
        console.print(f"[yellow]skipped segment {name}[/]: {why}", soft_wrap=True)
    return present


def _settings(params: Path, data: Path | None, **overrides: Any):
    from pipeline.config import load_settings

    if data is not None:
        overrides["data_dir"] = str(data)
    return load_settings(params, **overrides)


@contextmanager
def _stage(name: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """Show a spinner for a stage, log its wall time, and turn user errors into one line."""
    from pipeline.config import ConfigError

    start = time.perf_counter()
    try:
        with console.status(f"[bold]{name}[/]") as status:
            yield lambda msg: status.update(f"[bold]{name}[/]: {msg}")
    except (ValueError, FileNotFoundError, ConfigError, RuntimeError) as exc:
        from pipeline.raw_tables import RawTableError

        # One line however narrow the terminal (soft wrap), and the message taken literally:
        # a path or a parser's words may hold brackets that rich would read as markup.
        console.print(f"[red]error in {name}: {escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(INPUT_EXIT_CODE if isinstance(exc, RawTableError) else 1) from None
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            console.print(f"[red]error[/] in {name}: {exc.message}")
            raise typer.Exit(1) from None
        raise
    if not quiet:
        console.print(f"[green]✓[/] {name} [dim]({time.perf_counter() - start:.1f}s)[/]")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
) -> None:
    """Credit scoring for long-tail lending from merchant and consumer transaction logs."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def generate(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    merchants: Annotated[int | None, typer.Option(min=1, help="Merchants in the world.")] = None,
    consumers: Annotated[int | None, typer.Option(min=1, help="Consumers in the world.")] = None,
    months: Annotated[int | None, typer.Option(min=1, help="Months of history.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    flavour: Annotated[
        str | None,
        typer.Option(
            help="platform (merchants and consumers of a payment platform) or bank (a retail "
            "bank's consumers: account statements, loan outcomes)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Data folder to write raw/ and truth/ into.")
    ] = None,
) -> None:
    """Generate the synthetic transaction world (params.yaml `world`, options override)."""
    from pipeline.config import WorldParams
    from pipeline.stages import generate as stage

    choices = get_args(WorldParams.model_fields["flavour"].annotation)
    if flavour is not None and flavour not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}; got {flavour!r}")
    with _stage("generate") as progress:
        settings = _settings(params, out_dir or data)
        given = {"merchants": merchants, "consumers": consumers, "months": months, "seed": seed}
        given["flavour"] = flavour
        world = settings.world.model_copy(update={k: v for k, v in given.items() if v is not None})
        counts = stage.run(settings.model_copy(update={"world": world}), progress)
    for table, rows in counts.items():
        out.print(f"  {table:<24} {rows:>12,} rows")


@app.command()
def validate(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Source mapping (default: raw/contract.yaml if present).")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Print what the mapping mapped and not.")] = False,
) -> None:
    """Validate raw tables: clean rows go on, bad rows to quarantine with the rule they broke.

    A file that cannot be read as a table (empty, truncated, not Parquet, a malformed or
    non-UTF-8 CSV line, no rows, a required column without values) stops the run with one line
    naming the file (and the CSV line) and exit code 2; nothing already validated is changed.
    A lender's own files are read through a source mapping (``contract.yaml``, see
    pipeline/sources.py); a mapping that cannot be used is one line and exit code 1.
    """
    from pipeline.stages import validate as stage

    with _stage("validate"):
        summary = stage.run(_settings(params, data), mapping=mapping)
    for table, s in summary["tables"].items():
        rules = ", ".join(f"{k}={v}" for k, v in s["rules"].items()) or "-"
        out.print(
            f"  {table:<24} in {s['rows_in']:>11,}  out {s['rows_out']:>11,}  "
            f"quarantined {s['quarantined']:>7,}  {rules}",
            soft_wrap=True,
        )
    from features.contract.segments import SEGMENTS

    excluded = summary["consent_excluded"]
    counts = " and ".join(
        f"{excluded.get(SEGMENTS[s].entity_table, 0):,} {SEGMENTS[s].entity_table}"
        for s in summary["segments"]
    )
    out.print(f"  no consent: {counts} excluded with all their rows")
    for name, why in summary["skipped_segments"].items():
        console.print(f"[yellow]skipped segment {name}[/]: {escape(why)}", soft_wrap=True)
    for name, why in summary.get("no_transaction_log", {}).items():
        console.print(f"[yellow]segment {name}[/]: {escape(why)}", soft_wrap=True)
    if explain:
        _explain_mapping(summary.get("mapping"))


def _explain_mapping(mapping: dict[str, Any] | None) -> None:
    """Print the source mapping's report: per coded column, what was mapped and what was not."""
    import json

    from rich.table import Table

    if mapping is None:
        return out.print("  no source mapping: every table was read as the contract names it")
    money = mapping["currency"]
    out.print(
        f"  source mapping {escape(str(mapping['file']))}: currency {money['code']} (scale "
        f"{money['scale']:g}), timezone {mapping['timezone']}, unmapped: {mapping['unmapped']}",
        soft_wrap=True,
    )
    table = Table("table", "column", "source value", "canonical", "rows", title="source mapping")
    for name, report in mapping["tables"].items():
        for column, counts in report["values"].items():
            for value, (canonical, rows) in counts["applied"].items():
                shown = canonical if isinstance(canonical, str) else json.dumps(canonical)
                table.add_row(name, column, escape(value), shown, f"{rows:,}")
            for value, rows in counts["unmapped"].items():
                fell = f"[red]unmapped -> {escape(counts['action'])}[/]"
                table.add_row(name, column, escape(value), fell, f"{rows:,}")
    out.print(table)


@app.command()
def features(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
    as_of: AsOfOption = None,
    catalog: Annotated[
        bool,
        typer.Option(
            "--catalog", help="Write the feature catalog page (docs/features.md) and stop."
        ),
    ] = False,
) -> None:
    """Build point-in-time features: the training spine, or every consented entity at --as-of."""
    if catalog:
        from features.definitions import catalog_page
        from pipeline.inputs import definition_params
        from pipeline.storage import write_text

        settings = _settings(params, data)
        page = catalog_page(definition_params(settings.features, settings.label))
        page = write_text(page + "\n", Path("docs") / "features.md")
        out.print(f"  catalog -> {page}")
        return
    keep_freed_memory()  # before polars is imported (see pipeline/__init__.py)
    from pipeline.stages import features as stage

    date = _date(as_of)
    for seg in _segments(segment, params, data, "features"):
        with _stage(f"features {seg}"):
            path, rows = stage.run(_settings(params, data), seg, date)
        out.print(f"  {seg}: {rows:,} rows -> {path}")


@app.command()
def train(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    segment: SegmentOption = SegmentChoice.all,
) -> None:
    """Train a monotone-constrained, calibrated LightGBM model per segment (out-of-time)."""
    from pipeline.stages import train as stage

    for seg in _segments(segment, params, data, "train"):
        with _stage(f"train {seg}"):
            info = stage.run(_settings(params, data), seg)
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

    for seg in _segments(segment, params, data, "evaluate"):
        with _stage(f"evaluate {seg}"):
            metrics = stage.run(_settings(params, data), seg)
        t, se = metrics["test"], metrics.get("se", {}).get("test")  # se: cross-validated
        ceiling = metrics.get("ceiling", {}).get("auc")
        ceiling = "n/a" if ceiling is None else f"{ceiling:.3f}"
        auc, ks = (f"{t[k]:.3f}" + (f" ± {se[k]:.3f}" if se else "") for k in ("auc", "ks"))
        psi = "n/a (cv)" if se else f"{metrics['score_psi_train_test']:.3f}"
        out.print(
            f"  {seg}: {'cross-validated' if se else 'test'} AUC {auc} (true-PD ceiling "
            f"{ceiling}), KS {ks}, ECE {t['ece']:.4f}, score PSI {psi}"
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

    for seg in _segments(segment, params, data, "register"):
        with _stage(f"register {seg}"):
            record = stage.run(_settings(params, data), seg)
        out.print(f"  {record['model_name']} v{record['version']} @{record['alias']}")
    if promote_:
        promote(params=params, data=data, segment=segment, force=False)


def _promote_segments(params: Path, data: Path | None, segment: SegmentChoice, force: bool) -> bool:
    """Run the gate per segment and print each decision; True when none was refused."""
    from pipeline.stages import promote as stage

    ok = True
    for seg in _segments(segment, params, data, "promote"):
        with _stage(f"promote {seg}"):
            result = stage.run(_settings(params, data), seg, force=force)
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
    if not _promote_segments(params, data, segment, force):
        raise typer.Exit(1)


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
) -> None:
    """Batch-score every consented entity at a date with the champion model.

    ``--segment all`` scores the segments of params.yaml ``scoring.segments`` that the validated
    data holds. Exit codes:
    0 done (or already done), 1 error (nothing published), 3 drift alert (scores
    published, manifest says alert; see params.yaml drift).
    """
    keep_freed_memory()  # scoring builds features: before polars is imported
    from pipeline.batch import DRIFT_EXIT_CODE
    from pipeline.config import DriftParams
    from pipeline.stages import score as stage

    date = _date(as_of)
    if model_uri is not None and segment is SegmentChoice.all:
        raise typer.BadParameter("--model-uri needs a single --segment")
    choices = get_args(DriftParams.model_fields["fail_on"].annotation)
    if drift_fail_on is not None and drift_fail_on not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}; got {drift_fail_on!r}")
    with _stage("score", quiet=True):
        settings = _settings(params, data)
    present = _segments(segment, params, data, "score")
    # `all` scores the segments of params.yaml scoring.segments that the data holds.
    chosen = (
        [s for s in stage.segments(settings) if s in present]
        if segment is SegmentChoice.all
        else present
    )
    alerts = []
    for seg in chosen:
        with _stage(f"score {seg}"):
            manifest = stage.run(settings, seg, date, model_uri, force=force)
        state = "already done, skipped" if manifest.get("skipped") else "written"
        drift = manifest.get("drift", {})
        out.print(
            f"  {seg} as of {manifest['as_of']}: {manifest['rows_out']:,} scores with "
            f"{manifest['model_name']} v{manifest['model_version']} ({state}); drift "
            f"{drift.get('status', 'n/a')} (score PSI {manifest['score_psi_vs_training']:.3f})"
        )
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
    _promote_segments(params, data, SegmentChoice.all, force=False)
    settings = _settings(params, data)
    from pipeline import registry
    from pipeline.batch import DRIFT_EXIT_CODE

    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    for seg in _segments(SegmentChoice.all, params, data, "demo"):
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
