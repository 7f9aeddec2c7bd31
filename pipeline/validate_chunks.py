"""Validation's output, written table by table or chunk by chunk; exact chunked duplicates.

A transaction log larger than ``validation.chunk_rows`` is validated in row chunks, in file
order, so peak memory is about one chunk instead of the whole log. Every rule is a rule on one
row (or a join with the small entity table) except the unique key: "every copy of a duplicated
``txn_id`` is quarantined" needs the whole log. So a first pass (:func:`duplicated_keys`) reads
the chunks and keeps a 128-bit hash of each key still in play; the keys seen more than once
are the duplicates. In the second pass, each row of a chunk whose key is duplicated elsewhere
gets a phantom copy (:func:`with_phantoms`) before the table's dataframely schema runs: the
schema then flags the row with exactly the rules it flags when it sees the whole log (the
duplicate and whatever else the row broke), and the phantoms are dropped from the quarantine
(:func:`without_phantoms`). Chunks are written in file order, so the outputs are the whole
log's, row for row.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import tables as contract
from features.contract.segments import SEGMENTS
from pipeline.raw_tables import ROW, RULES, Table
from pipeline.source_transform import merge_reports
from pipeline.storage import publishing

_KEY = ("_key_h1", "_key_h2")
_SEEDS = (0x5EED_0001, 0x5EED_0002)


def key_hashes(key: str) -> list[pl.Expr]:
    """Two independent 64-bit hashes of the key as text (a null key hashes like any value)."""
    text = pl.col(key).cast(pl.String)
    return [text.hash(seed).alias(name) for name, seed in zip(_KEY, _SEEDS, strict=True)]


def duplicated_keys(hashes: list[pl.DataFrame]) -> pl.DataFrame:
    """The key hashes seen more than once over every chunk's :func:`key_hashes`.

    Two 64-bit hashes make a false duplicate (two different keys, same pair) about as likely
    as 1e-22 at a billion rows. The first hash, sorted, finds candidates cheaply; the pair
    decides among them.
    """
    if not hashes:
        return pl.DataFrame(schema=dict.fromkeys(_KEY, pl.UInt64))
    first = pl.concat([h.select(_KEY[0]) for h in hashes]).to_series().sort()
    candidates = first.filter(first == first.shift(1)).unique().implode()
    pairs = pl.concat([h.filter(pl.col(_KEY[0]).is_in(candidates)) for h in hashes])
    return pairs.filter(pl.struct(_KEY).is_duplicated()).unique()


def with_phantoms(t: Table, key: str, duplicated: pl.DataFrame) -> None:
    """Add to ``t.data`` a copy (negative ``source_row``) of each row whose key is duplicated.

    The copy makes the schema's unique-key rule see the duplicate that lives in another chunk;
    see the module docstring.
    """
    if duplicated.height == 0:
        return
    hit = t.data.with_columns(key_hashes(key)).join(
        duplicated, on=list(_KEY), how="semi", maintain_order="left"
    )
    if hit.height:
        phantom = hit.drop(_KEY).with_columns((-1 - pl.col(ROW)).alias(ROW))
        t.data = pl.concat([t.data, phantom])


def without_phantoms(t: Table) -> None:
    """Drop the phantoms :func:`with_phantoms` added from the quarantined rows."""
    t.bad = [b.filter(pl.col(ROW) >= 0) for b in t.bad]


class Staging:
    """Temporary output folders, filled table by table and published on a clean exit.

    Both folders go through :func:`pipeline.storage.publishing`: an exception anywhere leaves
    the previous outputs as they were and no temporary behind. A table comes whole
    (:meth:`finish`) or a row chunk at a time (:meth:`add` each chunk, then :meth:`close`);
    a chunked table is appended to one Parquet file per folder, a row group per chunk.
    """

    def __init__(self, validated_dir: Path, quarantine_dir: Path) -> None:
        self.targets = (validated_dir, quarantine_dir)
        self.stats: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, Counter[str]] = {}
        self.consent: dict[str, int] = {}
        self.inputs: dict[str, str] = {}
        self.mapping: dict[str, dict[str, Any]] = {}
        self.tmp: list[Path] = []
        self._writers: dict[str, list[pq.ParquetWriter]] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Staging:
        with contextlib.ExitStack() as stack:
            self.tmp = [stack.enter_context(publishing(target)) for target in self.targets]
            self._stack = stack.pop_all()
        return self

    def finish(self, t: Table) -> None:
        """Write one whole table's clean and quarantined rows, record its counts, release it."""
        self.add(t, whole=True)
        self.close(t.name)

    def add(self, t: Table, *, whole: bool = False) -> None:
        """Write one chunk of a table (rows in file order), add up its counts, release it."""
        v_tmp, q_tmp = self.tmp
        bad = (
            pl.concat(t.bad)
            if t.bad
            else pl.DataFrame(schema={ROW: pl.Int64, RULES: pl.List(pl.String)})
        )
        quarantined = t.source.filter(pl.col(ROW).is_in(bad[ROW].implode()))
        outputs = (
            t.data.drop(ROW),
            quarantined.join(bad, on=ROW, how="left")
            .sort(ROW)
            .select(ROW, *contract.TABLES[t.name].columns, RULES),
        )
        for folder, frame, i in ((v_tmp, outputs[0], 0), (q_tmp, outputs[1], 1)):
            path = folder / f"{t.name}.parquet"
            if whole:
                frame.write_parquet(path)
                continue
            arrow = frame.to_arrow()
            writers = self._writers.setdefault(t.name, [])
            if len(writers) <= i:
                # zstd, as polars writes the tables validated whole
                writers.append(pq.ParquetWriter(path, arrow.schema, compression="zstd"))
            if arrow.num_rows:
                writers[i].write_table(_cast(arrow, writers[i].schema))
        counts = bad.select(pl.col(RULES).explode().drop_nulls()).group_by(RULES).len()
        stats = self.stats.setdefault(t.name, {"rows_in": 0, "rows_out": 0, "quarantined": 0})
        stats["rows_in"] += t.rows_in
        stats["rows_out"] += t.data.height
        stats["quarantined"] += bad.height
        self.rules.setdefault(t.name, Counter()).update(dict(counts.iter_rows()))
        self.consent[t.name] = self.consent.get(t.name, 0) + t.consent_dropped
        self.inputs[t.name] = t.fmt
        self.mapping[t.name] = merge_reports(self.mapping.get(t.name, {}), t.mapping)
        t.data = t.source = pl.DataFrame()
        t.bad = []

    def close(self, name: str) -> None:
        """Close a table's files; its counts are final."""
        for writer in self._writers.pop(name, []):
            writer.close()
        self.stats[name]["rules"] = dict(sorted(self.rules.pop(name).items()))

    def summary(
        self, blanked: int, reference_time: datetime.datetime, skipped: dict[str, str], **more: Any
    ) -> dict[str, Any]:
        """Write summary.json (the folders are published when the block ends); return it."""
        order = [name for name in contract.TABLES if name in self.stats]
        summary = {
            "segments": [name for name in SEGMENTS if name not in skipped],
            "skipped_segments": skipped,
            "tables": {name: self.stats[name] for name in order},
            "consent_excluded": {
                **{name: self.consent[name] for name in order},
                "references_blanked": blanked,
            },
            "reference_time": reference_time.isoformat(),
            "inputs": {name: self.inputs[name] for name in order},
            **more,
        }
        (self.tmp[1] / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def __exit__(self, *exc: object) -> None:
        for name in list(self._writers):
            for writer in self._writers.pop(name):
                writer.close()
        self._stack.__exit__(*exc)


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A chunk in the file's schema (a column null in the first chunk is typed by the file)."""
    return table if table.schema == schema else table.cast(schema)
