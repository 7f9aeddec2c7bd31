"""Reading raw contract tables: find a table's file, stop on schema drift, parse to the contract.

A table is ``<table>.parquet`` or ``<table>.csv``, or the file a source mapping names (a
lender's own columns and codes, read through :mod:`pipeline.sources`). A file that cannot be
read as a table at all (empty, truncated or not Parquet, a malformed CSV line, bytes that are
not UTF-8, a header but no rows, a required column without a single value) stops the run with
:class:`RawTableError`, which names the file, the CSV line when it is known, and the problem in
plain words: the user fixes the file, not a row. A missing or mistyped column is schema drift
(:class:`SchemaDriftError`, before anything is written); compatible Parquet types are cast,
timestamps brought to UTC, CSV cells parsed (a cell that cannot be read flags its row).
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from features.contract import tables as contract
from features.contract.schemas import OPTIONAL_COLUMNS
from features.contract.segments import SEGMENTS, Segment
from pipeline import source_transform, sources
from pipeline.sources import IDENTITY, SourceMapping

ROW = "source_row"
RULES = "rules"
NO_LOG = "no transaction log, so only credit-history and identity features will be built"


class SchemaDriftError(ValueError):
    """A table lacks a contract column or holds it with an incompatible type."""


class RawTableError(ValueError):
    """A raw file that cannot be read as a table: which file, which line (CSV, when known), why.

    The message is one line, ``<file>[, line <n>]: <problem>``, so the CLI can print it as is.
    """

    def __init__(self, path: Path, problem: str, line: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.line = line
        where = str(path) if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {problem}")


_PARQUET_MAGIC = b"PAR1"


@contextlib.contextmanager
def _reader_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn what the reader raises into :class:`RawTableError`, in one line, naming the file.

    The checks before reading catch the common damage with plain words; this is the net under
    them, for damage only the reader sees (a Parquet page that does not decode, say).
    """
    try:
        yield
    except (pl.exceptions.PolarsError, OSError) as exc:
        # The first line of the reader's message: polars adds paragraphs of hints.
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if fmt == "parquet":
            problem = (
                f"the Parquet file is damaged and cannot be read (the reader says: {said}); "
                "expected a complete Parquet file: export it again"
            )
        else:
            problem = f"the CSV cannot be read (the parser says: {said}; it did not say which line)"
        raise RawTableError(path, problem) from None


def _check_parquet_bytes(path: Path) -> None:
    """Tell a truncated Parquet file from one that is not Parquet at all, by its marker bytes.

    A Parquet file starts and ends with ``PAR1``; a copy cut short keeps the first and loses the
    footer (with the schema) at the end.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(256)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head[:4] != _PARQUET_MAGIC:
        try:
            head_text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A character cut by the 256-byte window still reads as text.
            head_text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else None
        if head_text is None:
            looks = "binary data of another kind"
        else:
            looks = "text" + (" (a CSV file must be named .csv)" if "," in head_text else "")
        raise RawTableError(
            path,
            f"not a Parquet file; expected a file starting with the Parquet marker PAR1; got "
            f"{looks}",
        )
    if size < 12 or tail != _PARQUET_MAGIC:
        raise RawTableError(
            path,
            f"the Parquet file is truncated (it ends after {size:,} bytes without the Parquet "
            "footer); expected a complete file: copy or export it again",
        )


def _csv_lines(path: Path) -> Iterator[str]:
    """The file's lines decoded as UTF-8; a line that is not UTF-8 names itself."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = raw[exc.start]
                raise RawTableError(
                    path,
                    f"the text is not UTF-8 (byte 0x{byte:02x}, the line's byte {exc.start + 1}); "
                    "expected UTF-8: re-save the file as UTF-8 (from GBK, for instance: "
                    "iconv -f GBK -t UTF-8)",
                    line=number,
                ) from None


def _check_csv_lines(path: Path, separator: str = ",") -> None:
    """Every record has as many fields as the header, quotes close, and the text is UTF-8.

    Polars fills a short row with nulls without a word and reports other damage without a line
    number, so one streaming pass with the standard csv module finds the first bad line.
    Blank lines are allowed (they carry no record).
    """
    reader = csv.reader(_csv_lines(path), strict=True, delimiter=separator)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc) or "EOF" in str(exc):
                problem = (
                    "a quoted value opened on this line is never closed (unterminated quote), "
                    'so the rest of the file would be one value; expected a closing "'
                )
            else:
                problem = (
                    f"malformed quoting (the csv reader says: {exc}); expected values quoted "
                    "as in RFC 4180"
                )
            raise RawTableError(path, problem, line=start) from None
        if not record:
            continue
        if header is None:
            header = record
        elif len(record) != len(header):
            other = next((c for c in ";\t|" if c != separator and c in header[0]), None)
            hint = (
                f" (the header splits on {other!r}: set csv: {{separator: {other!r}}} for this "
                "table in contract.yaml)"
                if len(header) == 1 and other
                else ""
            )
            raise RawTableError(
                path,
                f"the line has {len(record)} fields; expected {len(header)}, as in the "
                f"header{hint}",
                line=start,
            )


def inspect(path: Path, fmt: str, separator: str = ",") -> pl.Schema:
    """The file's columns and types, after checking that it can be read as a table at all.

    Raises :class:`RawTableError` on an empty file, a truncated or non-Parquet ``.parquet``
    file, and (for CSV, in one pass over the file) a line that is not UTF-8, has the wrong
    number of fields or opens a quote it never closes.
    """
    if path.stat().st_size == 0:
        expected = "a Parquet file with rows" if fmt == "parquet" else "a header line and rows"
        raise RawTableError(path, f"the file is empty (0 bytes); expected {expected}")
    if fmt == "parquet":
        _check_parquet_bytes(path)
    else:
        _check_csv_lines(path, separator)
    return _header(path, fmt, separator)


def _header(path: Path, fmt: str, separator: str) -> pl.Schema:
    """The columns and types a readable file declares (no pass over its rows)."""
    with _reader_errors(path, fmt):
        if fmt == "parquet":
            return pl.read_parquet_schema(path)
        return pl.read_csv(path, n_rows=0, infer_schema=False, separator=separator).schema


class ContentCheck:
    """A table needs rows, and each required column at least one value, over all its rows.

    A column that is null (or, in a CSV, blank) in every row means the export lost it, not that
    every row is bad; quarantining them all would hide that. :meth:`see` takes the rows a piece
    at a time (validation reads a big log in row chunks); :meth:`check` judges them all.
    """

    def __init__(self, path: Path, table: str, *, text: bool) -> None:
        self.path, self.table, self.text = path, table, text
        spec = contract.TABLES[table]
        self.required = [c for c in spec.columns if c not in spec.nullable]
        self.rows = 0
        self.has_value = [False] * len(self.required)

    def see(self, frame: pl.DataFrame) -> None:
        """Take one piece of the table's rows (the contract's columns, as read)."""
        self.rows += frame.height
        if not self.required or frame.height == 0 or all(self.has_value):
            return
        present = (
            (pl.col(c).str.strip_chars().str.len_bytes() > 0).any()
            if self.text
            else pl.col(c).is_not_null().any()
            for c in self.required
        )
        seen = frame.select(present).row(0)
        self.has_value = [a or bool(b) for a, b in zip(self.has_value, seen, strict=True)]

    def check(self) -> None:
        """Raise :class:`RawTableError` on no rows or a required column without a value."""
        if self.rows == 0:
            raise RawTableError(
                self.path, "the file has a header but no rows; expected at least one row"
            )
        for column, ok in zip(self.required, self.has_value, strict=True):
            if not ok:
                raise RawTableError(
                    self.path,
                    f"required column {column!r} has no value in any of its {self.rows:,} rows; "
                    "expected a value in every row",
                )


@dataclass
class Table:
    """One table on its way through validation."""

    name: str
    fmt: str  # "parquet" or "csv"
    source: pl.DataFrame  # rows as read (typed for parquet, text for csv), with ROW
    data: pl.DataFrame  # contract-typed rows still in play, with ROW
    rows_in: int
    bad: list[pl.DataFrame] = field(default_factory=list)  # frames of (ROW, RULES)
    parse_flags: list[str] = field(default_factory=list)  # cells unread, values unmapped
    consent_dropped: int = 0
    mapping: dict[str, Any] = field(default_factory=dict)  # what the source mapping did


def find(raw_dir: Path, table: str, mapping: SourceMapping = IDENTITY) -> tuple[Path, str] | None:
    """The table's file and format, or None when there is none.

    Without a source mapping (or when it names no file) ``<table>.parquet`` then ``.csv``;
    a file the mapping names must exist (see :func:`pipeline.sources.file_of`).
    """
    return sources.file_of(raw_dir, table, mapping)


def _compatible(got: pl.DataType, want: pl.DataType) -> bool:
    """Whether a Parquet column of type ``got`` may be cast to the contract type ``want``."""
    if got == pl.Null():
        return True
    if isinstance(want, pl.Datetime):
        return isinstance(got, pl.Datetime)
    if want.is_float():
        return got.is_numeric()
    if want.is_integer():
        return got.is_integer()
    if want == pl.String():
        return got == pl.String() or isinstance(got, pl.Categorical | pl.Enum)
    return got == want


def absent_optional(table: str, columns: pl.Schema, mapping: SourceMapping = IDENTITY) -> set[str]:
    """The optional contract columns the file lacks: read as null, not as schema drift.

    ``features.contract.schemas.OPTIONAL_COLUMNS`` (gender) that neither the file nor the
    mapping provides: a lender that does not hold gender is not refused.
    """
    source = mapping.table(table)
    return {
        c
        for c in OPTIONAL_COLUMNS.get(table, ())
        if c not in columns and c not in source.columns and c not in source.constants
    }


def check_drift(
    table: str, columns: pl.Schema, fmt: str, mapping: SourceMapping = IDENTITY
) -> None:
    """Raise :class:`SchemaDriftError` on a missing contract column or an incompatible type.

    Through a source mapping, a missing column names the source column and the contract column
    it feeds; a column matched as text (a coded column with a value map, an identifier) may be
    of any type, and a date or timestamp with a format must be text.
    """
    spec = contract.TABLES[table]
    mapped = table in mapping.tables
    absent = absent_optional(table, columns, mapping)
    for column, parts in sources.feeds(table, mapping).items():
        if column in absent:
            continue
        dtype = spec.columns[column]
        for part in parts:
            if part not in columns:
                feeds = "" if part == column else f" (the source of contract column {column!r})"
                raise SchemaDriftError(
                    f"table {table!r}: missing column {part!r}{feeds}; expected a column of "
                    f"type {dtype} (found columns: {', '.join(columns.names())})"
                )
        if fmt != "parquet" or len(parts) > 1:
            continue
        got = columns[parts[0]]
        if mapped and sources.matched_as_text(table, column, mapping):
            continue
        if sources.parsed_from_text(table, column, mapping):
            ok = got in (pl.String(), pl.Null())
            want = f"text to read with format {mapping.table(table).formats[column]!r}"
        else:
            ok = _compatible(got, dtype)
            want = str(dtype)
        if not ok:
            named = "" if parts[0] == column else f" (source of {column!r})"
            raise SchemaDriftError(
                f"table {table!r}: column {parts[0]!r}{named} has type {got}; expected {want}"
            )


def columns_of(path: Path, fmt: str, separator: str = ",") -> pl.Schema:
    """The file's columns and types, without reading its rows (see :func:`inspect`)."""
    return inspect(path, fmt, separator)


def count_rows(raw_dir: Path, table: str, mapping: SourceMapping = IDENTITY) -> int:
    """How many rows the table's file holds (Parquet: from its footer; CSV: one pass)."""
    found = find(raw_dir, table, mapping)
    if found is None:
        return 0
    path, fmt = found
    with _reader_errors(path, fmt):
        if fmt == "parquet":
            return int(pl.scan_parquet(path).select(pl.len()).collect().item())
        separator = mapping.table(table).csv.separator
        scan = pl.scan_csv(path, infer_schema=False, separator=separator)
        return int(scan.select(pl.len()).collect().item())


def read(
    raw_dir: Path,
    table: str,
    *,
    inspected: bool = False,
    mapping: SourceMapping = IDENTITY,
    rows: tuple[int, int] | None = None,
    content: ContentCheck | None = None,
) -> Table | None:
    """Read one table through the source mapping, check it for drift, bring it to the contract.

    ``inspected`` says the caller already ran :func:`inspect` and :func:`check_drift` on the
    file (validation does, for every table before it writes anything), which spares a CSV a
    second pass over its lines. Raises :class:`RawTableError` when the file cannot be read as
    a table. The table's ``source`` holds the contract's columns with the user's cells (for
    quarantine), ``data`` the contract-typed rows with one flag column per way a cell failed
    (``bad_value_<column>``, ``unmapped_<column>``).

    ``rows`` = (first, count) reads that slice of the file only (``source_row`` still counts
    from the file's first row); its content is then not judged here but passed to
    ``content``, which the caller checks once every slice was seen.
    """
    found = find(raw_dir, table, mapping)
    if found is None:
        if contract.TABLES[table].optional:
            return None
        raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
    path, fmt = found
    separator = mapping.table(table).csv.separator
    header = _header(path, fmt, separator) if inspected else inspect(path, fmt, separator)
    if not inspected:
        check_drift(table, header, fmt, mapping)
    absent = absent_optional(table, header, mapping)
    wanted = list(
        dict.fromkeys(
            c
            for column, parts in sources.feeds(table, mapping).items()
            if column not in absent
            for c in parts
        )
    )
    first, count = rows or (0, None)
    with _reader_errors(path, fmt):
        if fmt == "parquet":
            scan = pl.scan_parquet(path).select(wanted)
        else:
            scan = pl.scan_csv(path, infer_schema=False, separator=separator).select(wanted)
        raw = (scan if rows is None else scan.slice(first, count)).collect()
    raw = raw.with_row_index(ROW, offset=first).with_columns(pl.col(ROW).cast(pl.Int64))
    # Timestamps are brought to UTC and CSV cells parsed here; other casts of Parquet columns
    # are left to the schema, which reports a value that does not fit (say, an Int64 too large
    # for Int32) as bad_value_<column>.
    mapped = source_transform.apply(raw, table, mapping, text=fmt == "csv", row=ROW)
    judged = ContentCheck(path, table, text=fmt == "csv") if rows is None else content
    if judged is not None:
        judged.see(mapped.source.drop(ROW))
    if rows is None and judged is not None:
        judged.check()
    # The contract's own Parquet columns: the typed rows are the rows as written.
    as_written = fmt == "parquet" and mapping is IDENTITY
    return Table(
        table,
        fmt,
        source=mapped.typed if as_written else mapped.source,
        data=mapped.typed,
        rows_in=raw.height,
        parse_flags=[] if as_written else mapped.flags,
        mapping=mapped.report,
    )


def present_segments(raw_dir: Path, mapping: sources.SourceMapping) -> tuple[Any, ...]:
    """The segments present in ``raw_dir``, {skipped segment: why}, {segment without a log: why}.

    A segment needs its entity table; its transactions are optional (see
    :func:`pipeline.validate.validate`).
    """
    present: list[Segment] = []
    skipped: dict[str, str] = {}
    no_log: dict[str, str] = {}
    for seg in SEGMENTS.values():
        has_entities = find(raw_dir, seg.entity_table, mapping) is not None
        has_log = find(raw_dir, seg.txn_table, mapping) is not None
        if has_entities:
            present.append(seg)
            if not has_log:
                no_log[seg.name] = f"no {seg.txn_table} in {raw_dir}: {NO_LOG}"
        elif not has_log:
            skipped[seg.name] = (
                f"neither {seg.entity_table} nor {seg.txn_table} is in {raw_dir}; its loans are "
                "quarantined as segment_not_provided"
            )
        else:
            raise ValueError(
                f"expected {raw_dir / seg.entity_table}.parquet or .csv beside "
                f"{seg.txn_table} (a segment's transactions need its entities); got neither"
            )
    if not present:
        tables = " or ".join(seg.entity_table for seg in SEGMENTS.values())
        raise ValueError(f"expected the tables of a segment ({tables}) in {raw_dir}; got none")
    return present, skipped, no_log
