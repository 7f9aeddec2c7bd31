"""Validation of raw tables against the input contract (thin first version).

Clean rows go on to ``validated/``; rows that break a rule go to ``quarantine/`` with the rule;
entities without consent are dropped with all their rows; schema drift stops the run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl

from pipeline.contract import CONSUMER_TXN_KINDS, MERCHANT_TXN_KINDS, TABLES


class SchemaDriftError(ValueError):
    """A table is missing a contract column or has one that cannot be read as its type."""


def _read(raw_dir: Path, name: str) -> pl.DataFrame | None:
    for suffix, reader in ((".parquet", pl.read_parquet), (".csv", pl.read_csv)):
        path = raw_dir / f"{name}{suffix}"
        if path.exists():
            return reader(path)
    if TABLES[name].optional:
        return None
    raise FileNotFoundError(f"expected table {name!r} at {raw_dir / (name + '.parquet')}")


def _conform(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    table = TABLES[name]
    for column, dtype in table.columns.items():
        if column not in frame.columns:
            raise SchemaDriftError(f"table {name!r}: missing column {column!r}")
        try:
            frame = frame.with_columns(pl.col(column).cast(dtype, strict=True))
        except pl.exceptions.PolarsError as exc:
            raise SchemaDriftError(
                f"table {name!r}: column {column!r} expected {dtype}; got {frame[column].dtype}"
            ) from exc
    return frame.select(list(table.columns))


def _rules(name: str, reference_time: dt.datetime) -> dict[str, pl.Expr]:
    table = TABLES[name]
    rules = {f"null_{c}": pl.col(c).is_null() for c in table.columns if c not in table.nullable}
    rules["duplicate_key"] = pl.struct(table.key).is_duplicated()
    if "amount" in table.columns:
        rules["non_positive_amount"] = pl.col("amount") <= 0
    if name == "merchant_transactions":
        rules["unknown_kind"] = ~pl.col("kind").is_in(MERCHANT_TXN_KINDS)
    if name == "consumer_transactions":
        rules["unknown_kind"] = ~pl.col("kind").is_in(CONSUMER_TXN_KINDS)
    if "ts" in table.columns:
        rules["future_timestamp"] = pl.col("ts") > reference_time
    if name == "loans":
        rules["non_positive_principal"] = pl.col("principal") <= 0
    return rules


def validate(
    raw_dir: Path, validated_dir: Path, quarantine_dir: Path, *, reference_time: dt.datetime
) -> dict:
    """Validate every contract table, quarantine bad rows, drop non-consented entities."""
    frames = {}
    for name in TABLES:
        frame = _read(raw_dir, name)
        if frame is not None:
            frames[name] = _conform(name, frame)
    summary: dict = {"tables": {}, "consent_excluded": {}}
    tmp_valid = validated_dir.with_name(validated_dir.name + ".tmp")
    tmp_quar = quarantine_dir.with_name(quarantine_dir.name + ".tmp")
    for tmp in (tmp_valid, tmp_quar):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    clean: dict[str, pl.DataFrame] = {}
    for name, frame in frames.items():
        rules = _rules(name, reference_time)
        flagged = frame.with_columns(
            pl.concat_list(
                [pl.when(expr.fill_null(False)).then(pl.lit(rule)) for rule, expr in rules.items()]
            )
            .list.drop_nulls()
            .alias("rules")
        )
        bad = flagged.filter(pl.col("rules").list.len() > 0)
        clean[name] = flagged.filter(pl.col("rules").list.len() == 0).drop("rules")
        bad.write_parquet(tmp_quar / f"{name}.parquet")
        counts = bad.explode("rules").group_by("rules").len().sort("rules")
        summary["tables"][name] = {
            "rows_in": frame.height,
            "quarantined": bad.height,
            "rules": dict(zip(counts["rules"], counts["len"], strict=True)),
        }
    no_consent = {
        seg: clean[table].filter(~pl.col("consent"))[key]
        for seg, table, key in (
            ("merchant", "merchants", "merchant_id"),
            ("consumer", "consumers", "consumer_id"),
        )
    }
    filters = {
        "merchants": ~pl.col("merchant_id").is_in(no_consent["merchant"].implode()),
        "consumers": ~pl.col("consumer_id").is_in(no_consent["consumer"].implode()),
        "merchant_transactions": ~pl.col("merchant_id").is_in(no_consent["merchant"].implode()),
        "consumer_transactions": ~pl.col("consumer_id").is_in(no_consent["consumer"].implode()),
        "loans": ~pl.col("entity_id").is_in(
            pl.concat([no_consent["merchant"], no_consent["consumer"]]).implode()
        ),
    }
    for name, expr in filters.items():
        kept = clean[name].filter(expr)
        summary["consent_excluded"][name] = clean[name].height - kept.height
        clean[name] = kept
    kept_loans = clean["loans"]["loan_id"].implode()
    for name in ("repayments", "outcomes"):
        if name in clean:
            kept = clean[name].filter(pl.col("loan_id").is_in(kept_loans))
            summary["consent_excluded"][name] = clean[name].height - kept.height
            clean[name] = kept
    for name, frame in clean.items():
        frame.write_parquet(tmp_valid / f"{name}.parquet")
        summary["tables"][name]["rows_out"] = frame.height
    (tmp_quar / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    for tmp, final in ((tmp_valid, validated_dir), (tmp_quar, quarantine_dir)):
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return summary
