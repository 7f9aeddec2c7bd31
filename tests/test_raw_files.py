"""A raw file that cannot be read as a table: one line naming the file and the problem, exit 2.

Each test writes the tiny clean world of ``tests.synth_fixtures`` into ``tmp_path``, breaks one
file the way real exports break, and runs ``longtail validate`` (or ``longtail demo``) through
typer's CliRunner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import INPUT_EXIT_CODE, app
from tests.synth_fixtures import clean_tables, write_tables

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def _world(tmp_path: Path, fmt: str) -> Path:
    """The tiny clean world as ``fmt`` files under ``tmp_path/data/raw``; returns the data dir."""
    write_tables(tmp_path / "data" / "raw", clean_tables(), fmt)
    return tmp_path / "data"


def _validate(data: Path):
    return runner.invoke(
        app, ["validate", "--params", str(REPO / "params.yaml"), "--data", str(data)]
    )


def _error_line(result, file: Path) -> str:
    """The error line, after checking the exit code, that it is one line, and no traceback."""
    assert result.exit_code == INPUT_EXIT_CODE, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "error in" in line]
    assert len(lines) == 1, result.output
    assert str(file) in lines[0]
    return lines[0]


# --- one case per way a file breaks ------------------------------------------------------------


def _replace_line(n: int, old: bytes, new: bytes) -> Callable[[Path], None]:
    """Replace ``old`` by ``new`` on line ``n`` (1-based; line 1 is the header)."""

    def apply(path: Path) -> None:
        lines = path.read_bytes().splitlines(keepends=True)
        lines[n - 1] = lines[n - 1].replace(old, new)
        path.write_bytes(b"".join(lines))

    return apply


def _write(frame: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    """Rewrite the file, in its own format, from the clean table changed by ``frame``."""

    def apply(path: Path) -> None:
        changed = frame(clean_tables()[path.stem])
        if path.suffix == ".parquet":
            changed.write_parquet(path)
        else:
            changed.write_csv(path)

    return apply


def _non_utf8(encoding: str, text: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_bytes(path.read_text().replace("sichuan", text).encode(encoding))

    return apply


def _no_values(
    column: str, value: object, dtype: pl.DataType
) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda df: df.with_columns(pl.lit(value, dtype=dtype).alias(column))


# (case, format, table, how it breaks, what the line says; "{line}" is "<file>, line <n>")
CASES = [
    (
        "empty_parquet",
        "parquet",
        "merchants",
        lambda path: path.write_bytes(b""),
        ["the file is empty (0 bytes); expected a Parquet file with rows"],
    ),
    (
        "empty_csv",
        "csv",
        "repayments",
        lambda path: path.write_bytes(b""),
        ["the file is empty (0 bytes); expected a header line and rows"],
    ),
    (
        "truncated_parquet",
        "parquet",
        "merchant_transactions",
        lambda path: path.write_bytes(path.read_bytes()[:200]),
        ["the Parquet file is truncated", "without the Parquet footer"],
    ),
    (
        "csv_under_parquet_name",
        "parquet",
        "loans",
        clean_tables()["loans"].write_csv,
        ["not a Parquet file", "a CSV file must be named .csv"],
    ),
    (
        "damaged_parquet",
        "parquet",
        "repayments",
        lambda path: path.write_bytes(b"PAR1" + bytes(40) + b"PAR1"),  # markers, garbage between
        ["the Parquet file is damaged and cannot be read"],
    ),
    (
        "unterminated_quote",
        "csv",
        "merchants",
        _replace_line(3, b"apparel", b'"apparel'),
        ["{file}, line 3: ", "unterminated quote"],
    ),
    (
        "malformed_quoting",
        "csv",
        "loans",
        _replace_line(4, b"merchant", b'"merch"ant'),  # text after a closing quote
        ["{file}, line 4: malformed quoting"],
    ),
    (
        "too_many_fields",
        "csv",
        "merchant_transactions",
        _replace_line(5, b",app", b",app,surplus"),
        ["{file}, line 5: the line has 8 fields; expected 7, as in the header"],
    ),
    (
        "too_few_fields",
        "csv",
        "merchant_transactions",
        _replace_line(5, b",app", b""),
        ["{file}, line 5: the line has 6 fields; expected 7, as in the header"],
    ),
    (
        "gbk",
        "csv",
        "consumers",
        _non_utf8("gbk", "四川"),
        ["{file}, line 3: the text is not UTF-8", "expected UTF-8"],
    ),
    (
        "latin1",
        "csv",
        "consumers",
        _non_utf8("latin-1", "sichuán"),
        ["{file}, line 3: the text is not UTF-8", "expected UTF-8"],
    ),
    (
        "parquet_no_rows",
        "parquet",
        "consumers",
        _write(pl.DataFrame.clear),
        ["the file has a header but no rows; expected at least one row"],
    ),
    (
        "csv_header_only",
        "csv",
        "loans",
        _write(pl.DataFrame.clear),
        ["the file has a header but no rows; expected at least one row"],
    ),
    (
        "parquet_column_all_null",
        "parquet",
        "merchant_transactions",
        _write(_no_values("amount", None, pl.Float64())),
        ["required column 'amount' has no value in any of its 6 rows"],
    ),
    (
        "csv_column_all_blank",
        "csv",
        "consumer_transactions",
        _write(_no_values("kind", " ", pl.String())),
        ["required column 'kind' has no value in any of its 6 rows"],
    ),
]


@pytest.mark.parametrize(
    ("fmt", "table", "breaks", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_broken_file_is_one_line_naming_file_and_problem(
    tmp_path: Path,
    fmt: str,
    table: str,
    breaks: Callable[[Path], None],
    says: list[str],
) -> None:
    data = _world(tmp_path, fmt)
    broken = data / "raw" / f"{table}.{fmt}"
    breaks(broken)
    line = _error_line(_validate(data), broken)
    assert "error in validate" in line
    for words in says:
        assert words.format(file=broken) in line


# --- what stays, and the demo -------------------------------------------------------------------


def test_a_broken_file_leaves_the_previous_validation_untouched(tmp_path: Path) -> None:
    data = _world(tmp_path, "parquet")
    assert _validate(data).exit_code == 0
    before = {
        p.relative_to(data): p.read_bytes()
        for folder in ("validated", "quarantine")
        for p in sorted((data / folder).rglob("*"))
        if p.is_file()
    }
    assert before
    # Break the last table validation reads, so every other table was read before it stops.
    broken = data / "raw" / "consumer_transactions.parquet"
    txns = clean_tables()["consumer_transactions"]
    txns.with_columns(pl.lit(None, dtype=pl.String).alias("consumer_id")).write_parquet(broken)
    _error_line(_validate(data), broken)
    after = {
        p.relative_to(data): p.read_bytes()
        for folder in ("validated", "quarantine")
        for p in sorted((data / folder).rglob("*"))
        if p.is_file()
    }
    assert after == before
    leftovers = [p.name for p in data.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_demo_stops_on_a_broken_raw_file_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.stages import generate

    data = _world(tmp_path, "csv")
    broken = data / "raw" / "merchants.csv"
    broken.write_bytes(b"")
    # The demo generates its world first; keep the broken one in place instead.
    monkeypatch.setattr(generate, "run", lambda settings, progress=None: {})
    result = runner.invoke(
        app, ["demo", "--params", str(REPO / "params.yaml"), "--data", str(data)]
    )
    line = _error_line(result, broken)
    assert "error in validate" in line
    assert "the file is empty (0 bytes)" in line
