"""A log validated in row chunks gives exactly what validating it whole gives.

Same validated rows (in the same order), same quarantined rows with the same rules, same
summary: duplicates whose copies sit in different chunks, unknown and quarantined entities,
consent, bad cells of a CSV (a copy with an unreadable cell is not a duplicate), the source
mapping's counts.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.contract import tables as contract
from pipeline.raw_tables import RawTableError
from pipeline.validate import validate
from tests.synth_fixtures import make_world
from world.synth import WorldSpec

REPO = Path(__file__).resolve().parent.parent
LOGS = ("merchant_transactions", "consumer_transactions")


def _run(raw: Path, out: Path, chunk_rows: int | None) -> dict:
    return validate(
        raw,
        out / "validated",
        out / "quarantine",
        reference_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        chunk_rows=chunk_rows,
    )


def _same_outputs(whole: Path, chunked: Path) -> None:
    for folder in ("validated", "quarantine"):
        names = sorted(p.name for p in (whole / folder).iterdir())
        assert names == sorted(p.name for p in (chunked / folder).iterdir())
        for name in names:
            if name.endswith(".parquet"):
                assert_frame_equal(
                    pl.read_parquet(whole / folder / name), pl.read_parquet(chunked / folder / name)
                )
    summary = (whole / "quarantine" / "summary.json").read_text()
    assert summary == (chunked / "quarantine" / "summary.json").read_text()


def _swap(frame: pl.DataFrame, row: int, **values: object) -> pl.DataFrame:
    """``frame`` with the cells of one row replaced (types kept)."""
    at = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(at).then(pl.lit(v, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


@pytest.fixture(scope="module")
def broken_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small world whose logs break every kind of rule, with duplicates across chunks."""
    root = tmp_path_factory.mktemp("chunks")
    make_world(root, WorldSpec(merchants=40, consumers=120, months=8, seed=3))
    raw = root / "raw"
    for name in LOGS:
        log = pl.read_parquet(raw / f"{name}.parquet")
        n = log.height
        entity = contract.TABLES[name].columns
        owner = "merchant_id" if "merchant_id" in entity else "consumer_id"
        first, middle = log.row(0, named=True), log.row(n // 2, named=True)
        log = _swap(log, 1, txn_id=first["txn_id"])  # a duplicate in the first chunk
        log = _swap(log, n - 1, txn_id=first["txn_id"])  # ... and a third copy in the last
        log = _swap(log, n - 2, txn_id=middle["txn_id"], amount=-5.0)  # a broken copy, far off
        log = _swap(log, 7, **{owner: "NOBODY"})  # an unknown entity
        log = _swap(log, 9, amount=None)  # a null
        log = _swap(log, 11, ts=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))  # future
        log = _swap(log, n - 3, kind="teleport")  # unknown kind in the last chunk
        log = _swap(log, n // 3, txn_id=None)  # a null key ...
        log = _swap(log, 2 * n // 3, txn_id=None)  # ... twice, in different chunks
        log.write_parquet(raw / f"{name}.parquet")
    return raw


@pytest.mark.parametrize("chunk_rows", [97, 1000, 10_000_000])
def test_chunked_parquet_equals_whole(broken_world: Path, tmp_path: Path, chunk_rows: int) -> None:
    whole = _run(broken_world, tmp_path / "whole", None)
    chunked = _run(broken_world, tmp_path / "chunked", chunk_rows)
    assert chunked == whole
    _same_outputs(tmp_path / "whole", tmp_path / "chunked")
    for name in LOGS:
        rules = whole["tables"][name]["rules"]
        assert rules["duplicate_id"] >= 5  # three copies and two null keys
        assert {"unknown_merchant", "unknown_consumer"} & set(rules)
        assert whole["tables"][name]["rows_in"] > 3 * 97  # several chunks
        bad = pl.read_parquet(tmp_path / "chunked" / "quarantine" / f"{name}.parquet")
        first = bad.filter(pl.col("source_row") == 0)
        assert first["rules"].to_list() == [["duplicate_id"]]
        assert bad["source_row"].is_sorted()


def test_a_copy_with_an_unreadable_cell_is_no_duplicate_in_chunks_either(
    broken_world: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(broken_world, raw)
    log = pl.read_parquet(raw / "merchant_transactions.parquet")
    n = log.height
    # Row 20 and the last-but-ten row share a key; the copy's amount cannot be read.
    text = log.cast({"amount": pl.String}).with_columns(
        pl.when(pl.int_range(pl.len()) == n - 10)
        .then(pl.lit("abc"))
        .otherwise(pl.col("amount"))
        .alias("amount"),
        pl.when(pl.int_range(pl.len()) == n - 10)
        .then(pl.lit(log["txn_id"][20]))
        .otherwise(pl.col("txn_id"))
        .alias("txn_id"),
    )
    (raw / "merchant_transactions.parquet").unlink()
    text.write_csv(raw / "merchant_transactions.csv")
    whole = _run(raw, tmp_path / "whole", None)
    chunked = _run(raw, tmp_path / "chunked", 50)
    assert chunked == whole
    _same_outputs(tmp_path / "whole", tmp_path / "chunked")
    bad = pl.read_parquet(tmp_path / "chunked" / "quarantine" / "merchant_transactions.parquet")
    assert bad.filter(pl.col("source_row") == n - 10)["rules"].to_list() == [["bad_value_amount"]]
    assert 20 not in bad["source_row"].to_list()


@pytest.mark.parametrize("example", ["bank-statement", "payment-platform"])
def test_the_mapping_report_adds_up_over_chunks(example: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(REPO / "examples" / example, raw)
    whole = _run(raw, tmp_path / "whole", None)
    chunked = _run(raw, tmp_path / "chunked", 3)
    assert chunked == whole
    _same_outputs(tmp_path / "whole", tmp_path / "chunked")
    assert json.loads((tmp_path / "chunked" / "quarantine" / "summary.json").read_text())


def test_a_log_whose_required_column_is_empty_everywhere_fails_chunked(
    broken_world: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(broken_world, raw)
    log = pl.read_parquet(raw / "consumer_transactions.parquet")
    log.with_columns(pl.lit(None, dtype=pl.String).alias("kind")).write_parquet(
        raw / "consumer_transactions.parquet"
    )
    with pytest.raises(RawTableError, match="required column 'kind' has no value"):
        _run(raw, tmp_path / "out", 100)
    assert not (tmp_path / "out" / "validated").exists()
