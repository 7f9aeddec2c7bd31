"""Commands that bring data in and build features: ``generate``, ``validate``, ``features``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.markup import escape

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


# ``--cluster``: the commands that can run on Dask (features, train) take it; it selects
# params.yaml ``compute.engine: dask`` at that scheduler (see pipeline/compute).
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
    with running("generate") as progress:
        settings = settings_for(params, out_dir or data)
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

    with running("validate"):
        summary = stage.run(settings_for(params, data), mapping=mapping)
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
    cluster: ClusterOption = None,
) -> None:
    """Build point-in-time features: the training spine, or every consented entity at --as-of.

    ``--cluster tcp://scheduler:8786`` (or params.yaml ``compute``) builds them on a Dask
    cluster, one entity partition per task; the features are the same.
    """
    if catalog:
        from features.definitions import catalog_page
        from pipeline.inputs import definition_params
        from pipeline.storage import write_text

        settings = settings_for(params, data)
        page = catalog_page(definition_params(settings.features, settings.label, settings.limits))
        page = write_text(page + "\n", Path("docs") / "features.md")
        out.print(f"  catalog -> {page}")
        return
    keep_freed_memory()  # before polars is imported (see pipeline/__init__.py)
    from pipeline.stages import features as stage

    date = parse_date(as_of)
    for seg in segments_for(segment, params, data, "features"):
        with running(f"features {seg}"):
            path, rows = stage.run(on_cluster(settings_for(params, data), cluster), seg, date)
        out.print(f"  {seg}: {rows:,} rows -> {path}")
