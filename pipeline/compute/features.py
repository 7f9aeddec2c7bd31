"""The feature job on an engine: the same :func:`features.build.build` per entity partition.

On the local engine this is :func:`pipeline.inputs.segment_features`, unchanged. On Dask:

1. :func:`sharded` cuts the segment's validated log once into ``compute.partitions`` hash
   partitions of the entity id (:func:`~pipeline.compute.engine.partition_of`): each of as many
   tasks reads one contiguous slice of rows, tags every row with its partition and writes the
   slice sorted by partition (a stable sort, so an entity's events keep the log's order) to a
   temporary folder beside the features. A partition's reader then skips, by the row groups'
   statistics, every row group of other partitions: the log is read twice in all, not once
   per partition.
2. :func:`segment_features` writes the spine, tagged with its rows' partitions and positions,
   to the same folder and submits one task per non-empty partition: it reads its spine rows
   and its events and runs :func:`features.build.build` with the whole (small) entity, loan
   and repayment tables; the driver puts the rows back in the spine's order. Every task reads
   its inputs from storage (nothing is scattered from the driver), so a task whose worker died
   can be run again on another, as often as the scheduler's ``allowed-failures`` permits.

Nothing is computed twice or differently: a partition holds whole entities, and ``build`` of a
set of entities is the same whichever other entities are built with them (the property its
``chunks`` already rely on), so the frame is bit-identical to the local one (tested).
The shards live under the data folder, so a real cluster needs that folder on storage every
worker reads (see docs/operations.md, "Running on a cluster"); they are removed when the block
ends, and leftovers of a killed run are swept by the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from features.build import Definitions
from features.build import build as build_features
from features.contract.segments import segment as segment_named
from features.keys import ENTITY
from pipeline import inputs
from pipeline.compute.engine import Engine, gather, partition_of
from pipeline.storage import Layout, require, sweep

log = logging.getLogger(__name__)
SHARD = "__partition"  # a shard row's entity partition
ROW = "__spine_row"  # a spine row's position, to put the partitions' rows back in order


@dataclasses.dataclass(frozen=True)
class Shards:
    """The segment's log cut into ``parts`` entity partitions, in a work ``folder``.

    ``folder`` is None on the local engine; ``files`` is empty when the segment has no log.
    """

    folder: Path | None = None
    files: tuple[str, ...] = ()
    parts: int = 1


def _shard(path: str, id_column: str, offset: int, length: int, parts: int, out: str) -> str:
    """Write rows ``offset .. offset+length`` of the log to ``out``, tagged and sorted by partition.

    Row groups of about one partition's share each, so a partition's reader skips the others'.
    """
    frame = (
        pl.scan_parquet(path)
        .slice(offset, length)
        .with_columns(partition_of(id_column, parts).alias(SHARD))
        .sort(SHARD, maintain_order=True)
        .collect()
    )
    frame.write_parquet(out, row_group_size=max(1, math.ceil(frame.height / parts)))
    return out


@contextlib.contextmanager
def sharded(
    engine: Engine, layout: Layout, segment: str, work: Path | None = None
) -> Iterator[Shards]:
    """The segment's validated log cut into entity partitions for the block, then removed.

    The shards go to a dotted temporary folder in ``work`` (default: beside the features; the
    score stage passes its own scores folder), which every worker must be able to read.

    Local engine: nothing to cut. A segment without a transaction log: a work folder (for the
    spines) and no files.
    """
    validated = require(layout.validated, "validate").resolve()
    seg = segment_named(segment)
    log_path = validated / f"{seg.txn_table}.parquet"
    if not engine.distributed:
        yield Shards()
        return
    target = (work or layout.features(segment).parent).resolve() / f"{segment}-shards"
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target)  # shards a killed run left behind
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if not log_path.exists():
            yield Shards(folder, (), engine.partitions)
            return
        rows = pl.scan_parquet(log_path).select(pl.len()).collect().item()
        parts = engine.partitions
        length = max(1, math.ceil(rows / parts))
        run = uuid.uuid4().hex[:8]  # fresh keys: a key still known to the scheduler is reused
        futures = [
            engine.client.submit(
                _shard,
                str(log_path),
                seg.entity_id,
                offset,
                length,
                parts,
                str(folder / f"slice-{i:05d}.parquet"),
                key=f"longtail-shard-{segment}-{i}-{run}",
                pure=False,
            )
            for i, offset in enumerate(range(0, max(rows, 1), length))
        ]
        files = gather(engine, futures, f"sharding the {segment} log")
        log.info("sharded %d %s events into %d partitions", rows, segment, parts)
        yield Shards(folder, tuple(files), parts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _build_part(
    defined: Definitions, validated: str, files: tuple[str, ...], spines: str, part: int
) -> pl.DataFrame:
    """:func:`features.build.build` of one partition's spine rows on that partition's events."""
    spine = pl.scan_parquet(spines).filter(pl.col(SHARD) == part).drop(SHARD).collect()
    base = inputs.feature_inputs(Path(validated), defined.segment)
    if files:
        events = (
            pl.scan_parquet(list(files))
            .filter(pl.col(SHARD) == part)
            .drop(SHARD)
            .rename({defined.segment.entity_id: ENTITY})
        )
        base = dataclasses.replace(base, events=events)
    return build_features(defined, spine, base)


def segment_features(
    engine: Engine,
    layout: Layout,
    defined: Definitions,
    spine: pl.DataFrame,
    *,
    chunks: int,
    shards: Shards | None = None,
    work: Path | None = None,
) -> pl.DataFrame:
    """The features of ``defined``'s segment for ``spine``, on ``engine``; same frame either way.

    Local: :func:`pipeline.inputs.segment_features` with ``chunks``. Dask: one task per
    non-empty entity partition of the spine, reading ``shards`` (cut here in ``work``, see
    :func:`sharded`, for this call only, when not given); the rows come back in the spine's
    order.
    """
    if not engine.distributed or spine.height == 0:
        return inputs.segment_features(layout, defined, spine, chunks=chunks)
    if shards is None or shards.folder is None:
        with sharded(engine, layout, defined.segment.name, work) as cut:
            return segment_features(engine, layout, defined, spine, chunks=chunks, shards=cut)
    validated = str(require(layout.validated, "validate").resolve())
    name = defined.segment.name
    run = uuid.uuid4().hex[:8]  # fresh keys: a key still known to the scheduler is reused
    numbered = spine.with_row_index(ROW).with_columns(
        partition_of(ENTITY, shards.parts).alias(SHARD)
    )
    spines = shards.folder / f"spine-{run}.parquet"
    numbered.sort(SHARD, maintain_order=True).write_parquet(spines)
    futures = [
        engine.client.submit(
            _build_part,
            defined,
            validated,
            shards.files,
            str(spines),
            int(part),
            key=f"longtail-features-{name}-{part}-{run}",
            pure=False,
        )
        for part in numbered[SHARD].unique().sort()
    ]
    try:
        frames = gather(engine, futures, f"the {name} features ({len(futures)} partitions)")
    finally:
        spines.unlink(missing_ok=True)
    return pl.concat(frames).sort(ROW).drop(ROW)
