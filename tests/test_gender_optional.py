"""(For the lead, with the validate hook) a lender without gender is not refused."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.validate import validate
from tests.synth_fixtures import REFERENCE_TIME, clean_tables, write_tables


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_lender_without_gender_validates_with_gender_null(tmp_path: Path, fmt: str) -> None:
    tables = clean_tables()
    tables = {
        n: t.drop("gender") if n in ("merchants", "consumers") else t for n, t in tables.items()
    }
    raw = write_tables(tmp_path / "raw", tables, fmt=fmt)
    summary = validate(
        raw, tmp_path / "validated", tmp_path / "quarantine", reference_time=REFERENCE_TIME
    )
    assert summary["tables"]["consumers"]["quarantined"] == 0
    for name in ("merchants", "consumers"):
        out = pl.read_parquet(tmp_path / "validated" / f"{name}.parquet")
        assert out.schema["gender"] == pl.String
        assert out["gender"].null_count() == out.height
