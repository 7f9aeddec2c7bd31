"""Where stages read and write (:class:`Layout`), the one atomic publish, and the one lock.

Every stage finds its files through :class:`Layout` and writes them through :func:`publishing`
(a folder) or :func:`publish_file` (one file): the output is filled under a dotted temporary
sibling of the target, flushed to disk and renamed into place, so a reader sees the previous
output or the new one, never half of one. Whatever happens, the temporary is removed in a
``finally``; temporaries a killed process left behind are swept by the next publish of the same
target. A replaced folder is moved aside first and removed only once the new one is in place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)


_AS_OF = "as_of="  # a scores folder's name: as_of=<YYYY-MM-DD>


@dataclass(frozen=True)
class Layout:
    """Where every stage reads and writes, under one data folder."""

    root: Path

    @property
    def raw(self) -> Path:
        """Raw contract tables (generated or the user's)."""
        return self.root / "raw"

    @property
    def truth(self) -> Path:
        """The synthetic world's true PDs (never features)."""
        return self.root / "truth"

    @property
    def validated(self) -> Path:
        """Clean, consented rows."""
        return self.root / "validated"

    @property
    def quarantine(self) -> Path:
        """Rows that broke a rule, with the rule, and summary.json."""
        return self.root / "quarantine"

    def features(self, segment: str, as_of: dt.date | None = None) -> Path:
        """Training features (loan spine) or scoring features at a date."""
        if as_of is None:
            return self.root / "features" / f"{segment}.parquet"
        return self.root / "features" / f"{segment}_as_of={as_of.isoformat()}.parquet"

    def book_features(self, segment: str) -> Path:
        """The whole consented book's features at the end of the observed log.

        Written by the features stage beside the training features; the train stage turns it
        into the production drift reference.
        """
        return self.root / "features" / f"{segment}_book.parquet"

    def model(self, segment: str) -> Path:
        """The trained Scorer's folder."""
        return self.root / "models" / segment

    def report(self, segment: str) -> Path:
        """Evaluation outputs: metrics.json, tables, plots and report.html."""
        return self.root / "reports" / segment

    def metrics(self, segment: str) -> Path:
        """The evaluation's headline figures and checks (inside the report folder)."""
        return self.report(segment) / "metrics.json"

    def registered(self, segment: str) -> Path:
        """What the register stage registered (a small JSON record)."""
        return self.root / "registry" / f"{segment}.json"

    def scores_of(self, segment: str) -> Path:
        """The folder of a segment's batch-scoring outputs, one ``as_of=<date>`` folder each."""
        return self.root / "scores" / segment

    def scores(self, segment: str, as_of: dt.date) -> Path:
        """One batch-scoring output folder."""
        return self.scores_of(segment) / f"{_AS_OF}{as_of.isoformat()}"

    def monitor(self, segment: str) -> Path:
        """What ``longtail monitor`` publishes (beside reports/: evaluate republishes that)."""
        return self.root / "monitor" / segment

    @property
    def compiled(self) -> Path:
        """The compiled models' cache (``scoring.compiled``): one folder per model, rebuildable."""
        return self.root / "compiled"

    def scores_lock(self, segment: str) -> Path:
        """The lock one scoring run of a segment holds."""
        return self.root / "scores" / f".longtail-score-{segment}.lock"


def scored_dates(layout: Layout, segment: str) -> list[dt.date]:
    """The dates of the segment's published scores folders (temporaries are dotted)."""
    root = layout.scores_of(segment)
    if not root.exists():
        return []
    return sorted(
        dt.date.fromisoformat(path.name.removeprefix(_AS_OF))
        for path in root.glob(f"{_AS_OF}*")
        if path.is_dir()
    )


def require(path: Path, stage: str) -> Path:
    """``path`` if it exists; otherwise say which stage makes it."""
    if not path.exists():
        raise FileNotFoundError(
            f"expected {path} (run `longtail {stage}` first); it does not exist"
        )
    return path


# --- the atomic publish ----------------------------------------------------------------------


def _temp_prefix(target: Path) -> str:
    return f".{target.name}-"


def sweep(target: Path, *, siblings: bool = False) -> None:
    """Remove temporaries an interrupted publish of ``target`` left beside it.

    ``siblings`` removes every dotted entry beside ``target`` (any target's temporaries): only
    for a folder one locked stage owns, such as a segment's scores.
    """
    if not target.parent.exists():
        return
    pattern = ".*" if siblings else f"{_temp_prefix(target)}*"
    for stale in target.parent.glob(pattern):
        log.warning("removing %s left by an interrupted run", stale)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(folder)


@contextlib.contextmanager
def publishing(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on a clean exit it replaces ``target`` in one rename.

    On any exception the temporary is removed and an existing ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    old: Path | None = None
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(target)}old-", dir=target.parent))
            target.rename(old / target.name)
        tmp.rename(target)
        _fsync(target.parent)
    except BaseException:
        if old is not None and not target.exists():
            (old / target.name).rename(target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def publish_file(target: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` write a temporary sibling of ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync(tmp)
        tmp.replace(target)
        _fsync(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` atomically (a temporary sibling renamed into place)."""
    return publish_file(path, frame.write_parquet)


def write_text(text: str, path: Path) -> Path:
    """Write ``text`` (UTF-8) to ``path``."""
    return publish_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(payload: dict, path: Path) -> Path:
    """Write ``payload`` as indented, key-sorted JSON (non-JSON values as strings)."""
    return write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), path)


def write_csv(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV."""
    return publish_file(path, frame.write_csv)


# --- the lock --------------------------------------------------------------------------------


class Locked(RuntimeError):
    """Another run holds the lock."""


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` for the block, or raise at once.

    The lock is released by the kernel when the process dies, so a crash never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(
                f"expected no other run to hold {path}; one is running, so this run stops "
                "without writing"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
