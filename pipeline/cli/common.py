"""What every ``longtail`` command shares: the app, the consoles, the options, the stage frame.

Only the CLI prints. :func:`running` shows a spinner, logs wall time and turns the errors a user
can fix into one line with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

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


ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Run on the Dask cluster at this scheduler address (e.g. tcp://scheduler:8786); "
        "overrides params.yaml compute.",
    ),
]


def on_cluster(settings: Any, cluster: str | None) -> Any:
    """``settings`` with ``--cluster`` applied to its ``compute`` section (unchanged without)."""
    if cluster is None:
        return settings
    from pipeline.compute.engine import with_cluster

    return settings.model_copy(update={"compute": with_cluster(settings.compute, cluster)})


def parse_date(value: str | None) -> dt.date | None:
    """An ISO date option, or None; anything else is a usage error naming the value."""
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


def segments_for(choice: SegmentChoice, params: Path, data: Path | None, command: str) -> list[str]:
    """The segments a command runs on: ``all`` is every segment the validated data holds.

    A lender brings the segments it has; a named segment it did not bring is a one-line error.
    """
    from pipeline.inputs import present_segments, require_segment
    from pipeline.storage import Layout

    with running(command, quiet=True):
        layout = Layout(settings_for(params, data).data_dir)
        if choice is not SegmentChoice.all:
            return [require_segment(layout, choice.value)]
        present = list(present_segments(layout))
    for name in (s.value for s in SegmentChoice if s.value not in (*present, "all")):
        why = f"its tables were not in the raw data of {layout.validated.parent} (see validate)"
        console.print(f"[yellow]skipped segment {name}[/]: {why}", soft_wrap=True)
    return present


def settings_for(params: Path, data: Path | None, **overrides: Any):
    """The params file's settings, with ``--data`` and any overrides applied."""
    from pipeline.config import load_settings

    if data is not None:
        overrides["data_dir"] = str(data)
    return load_settings(params, **overrides)


@contextmanager
def running(name: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
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
