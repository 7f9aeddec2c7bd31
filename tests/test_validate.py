"""Validation: each rule quarantines exactly the rows that break it, drift stops the run."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.contract import tables as contract
from pipeline.validate import SchemaDriftError, validate
from tests.synth_fixtures import REFERENCE_TIME, clean_tables, write_tables

D = datetime.date.fromisoformat


def T(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def run(tmp_path: Path, tables: dict[str, pl.DataFrame], fmt: str = "parquet") -> dict[str, Any]:
    raw = write_tables(tmp_path / "raw", tables, fmt)
    return validate(
        raw, tmp_path / "validated", tmp_path / "quarantine", reference_time=REFERENCE_TIME
    )


def quarantined(tmp_path: Path) -> dict[str, dict[int, list[str]]]:
    """Per table: source_row -> sorted rules, for every quarantined row."""
    out: dict[str, dict[int, list[str]]] = {}
    for name in contract.TABLES:
        path = tmp_path / "quarantine" / f"{name}.parquet"
        if not path.exists():
            continue
        df = pl.read_parquet(path)
        rows = dict(zip(df["source_row"].to_list(), df["rules"].to_list(), strict=True))
        if rows:
            out[name] = {row: sorted(rules) for row, rules in rows.items()}
    return out


def set_cell(df: pl.DataFrame, row: int, column: str, value: object) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value, dtype=df.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_clean_world_passes_and_consent_is_applied(tmp_path: Path) -> None:
    summary = run(tmp_path, clean_tables())
    assert quarantined(tmp_path) == {}
    assert summary["consent_excluded"] == {
        "merchants": 1,
        "consumers": 1,
        "merchant_transactions": 1,
        "consumer_transactions": 1,
        "loans": 1,
        "repayments": 1,
        "references_blanked": 2,
    }
    for name, stats in summary["tables"].items():
        dropped = summary["consent_excluded"][name]
        assert stats["rows_in"] == stats["rows_out"] + stats["quarantined"] + dropped
    validated = {
        name: pl.read_parquet(tmp_path / "validated" / f"{name}.parquet")
        for name in summary["tables"]
    }
    for name, df in validated.items():
        assert df.schema == contract.TABLES[name].schema, name
        # Nothing of the non-consenting M3 / C3 (or their loan L3) survives, not even a reference.
        cells = df.select(pl.all().cast(pl.String)).unpivot()["value"].to_list()
        assert not {"M3", "C3", "L3"} & set(cells), name
    assert validated["merchant_transactions"]["buyer_id"].to_list() == [
        "C1",
        "C1",
        None,
        None,
        None,
    ]
    saved = json.loads((tmp_path / "quarantine" / "summary.json").read_text())
    assert saved == summary


def test_non_consented_rows_are_dropped_not_quarantined(tmp_path: Path) -> None:
    tables = clean_tables()
    tables["merchant_transactions"] = set_cell(tables["merchant_transactions"], 5, "amount", -1.0)
    tables["repayments"] = set_cell(tables["repayments"], 6, "amount_due", 0.0)
    summary = run(tmp_path, tables)
    assert quarantined(tmp_path) == {}
    assert summary["consent_excluded"]["merchant_transactions"] == 1


LOAN1 = {0: ["loan_quarantined"], 1: ["loan_quarantined"], 2: ["loan_quarantined"]}
LOAN2 = {3: ["loan_quarantined"], 4: ["loan_quarantined"], 5: ["loan_quarantined"]}

CASES: list[tuple[str, str, int, str, object, dict[str, dict[int, list[str]]]]] = [
    # id, table, row, column, new value, expected quarantine (table -> row -> rules)
    ("null txn key", "merchant_transactions", 1, "txn_id", None,
     {"merchant_transactions": {1: ["null_txn_id"]}}),
    ("null entity key", "merchant_transactions", 2, "merchant_id", None,
     {"merchant_transactions": {2: ["null_merchant_id"]}}),
    ("null repayment key", "repayments", 4, "installment", None,
     {"repayments": {4: ["null_installment"]}}),
    ("zero amount", "consumer_transactions", 1, "amount", 0.0,
     {"consumer_transactions": {1: ["non_positive_amount"]}}),
    ("negative amount", "merchant_transactions", 0, "amount", -5.0,
     {"merchant_transactions": {0: ["non_positive_amount"]}}),
    ("zero principal", "loans", 0, "principal", 0.0,
     {"loans": {0: ["non_positive_principal"]}, "repayments": LOAN1}),
    ("negative amount due", "repayments", 3, "amount_due", -1.0,
     {"repayments": {3: ["non_positive_amount_due"]}}),
    ("unknown merchant kind", "merchant_transactions", 3, "kind", "gift",
     {"merchant_transactions": {3: ["unknown_kind"]}}),
    ("unknown consumer kind", "consumer_transactions", 2, "kind", "loan",
     {"consumer_transactions": {2: ["unknown_kind"]}}),
    ("direction against kind", "consumer_transactions", 3, "direction", "in",
     {"consumer_transactions": {3: ["direction_mismatch"]}}),
    ("unknown channel", "merchant_transactions", 4, "channel", "fax",
     {"merchant_transactions": {4: ["unknown_channel"]}}),
    ("unknown segment", "loans", 1, "segment", "partner",
     {"loans": {1: ["unknown_segment"]}, "repayments": LOAN2}),
    ("duplicate txn id", "merchant_transactions", 1, "txn_id", "T1",
     {"merchant_transactions": {0: ["duplicate_id"], 1: ["duplicate_id"]}}),
    ("duplicate instalment", "repayments", 1, "installment", 1,
     {"repayments": {0: ["duplicate_id"], 1: ["duplicate_id"]}}),
    ("unknown merchant", "merchant_transactions", 2, "merchant_id", "M9",
     {"merchant_transactions": {2: ["unknown_merchant"]}}),
    ("unknown consumer", "consumer_transactions", 0, "consumer_id", "C9",
     {"consumer_transactions": {0: ["unknown_consumer"]}}),
    ("loan of unknown entity", "loans", 1, "entity_id", "C9",
     {"loans": {1: ["unknown_entity"]}, "repayments": LOAN2}),
    ("loan of the wrong segment", "loans", 0, "segment", "consumer",
     {"loans": {0: ["unknown_entity"]}, "repayments": LOAN1}),
    ("future timestamp", "merchant_transactions", 0, "ts", T("2025-01-01 00:00:00"),
     {"merchant_transactions": {0: ["future_timestamp"]}}),
    ("future payment", "repayments", 1, "paid_on", D("2025-01-01"),
     {"repayments": {1: ["future_date"]}}),
    ("future issue", "loans", 1, "issued_on", D("2024-07-01"),
     {"loans": {1: ["future_date"]}, "repayments": LOAN2}),
    ("before onboarding", "merchant_transactions", 2, "ts", T("2023-02-15 00:00:00"),
     {"merchant_transactions": {2: ["before_onboarding"]}}),
    ("before registration", "consumer_transactions", 0, "ts", T("2022-05-31 23:00:00"),
     {"consumer_transactions": {0: ["before_onboarding"]}}),
    ("loan before registration", "loans", 1, "issued_on", D("2022-01-01"),
     {"loans": {1: ["before_onboarding"]}, "repayments": LOAN2}),
    ("repayment of unknown loan", "repayments", 0, "loan_id", "L9",
     {"repayments": {0: ["unknown_loan"]}}),
    ("paid before issue", "repayments", 3, "paid_on", D("2023-06-01"),
     {"repayments": {3: ["paid_before_issue"]}}),
    ("due before issue", "repayments", 3, "due_on", D("2023-06-01"),
     {"repayments": {3: ["due_before_issue"]}}),
    ("paid without date", "repayments", 2, "amount_paid", 5.0,
     {"repayments": {2: ["paid_without_date"]}}),
    ("birth year", "consumers", 1, "birth_year", 1800,
     {"consumers": {1: ["birth_year_below_min"]},
      "consumer_transactions": {2: ["consumer_quarantined"], 3: ["consumer_quarantined"]}}),
    # An entity's own row is quarantined: its events are held back and say why.
    ("future onboarding", "merchants", 1, "onboarded_on", D("2025-01-01"),
     {"merchants": {1: ["future_date"]},
      "merchant_transactions": {2: ["merchant_quarantined"], 3: ["merchant_quarantined"]}}),
    ("null entity id", "consumers", 1, "consumer_id", None,
     {"consumers": {1: ["null_consumer_id"]},
      "consumer_transactions": {2: ["unknown_consumer"], 3: ["unknown_consumer"]}}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("table", "row", "column", "value", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_rule_quarantines_exactly_its_rows(
    tmp_path: Path,
    table: str,
    row: int,
    column: str,
    value: object,
    expected: dict[str, dict[int, list[str]]],
) -> None:
    tables = clean_tables()
    tables[table] = set_cell(tables[table], row, column, value)
    summary = run(tmp_path, tables)
    assert quarantined(tmp_path) == expected
    for name, rows in expected.items():
        stats = summary["tables"][name]
        assert stats["quarantined"] == len(rows)
        counts: dict[str, int] = {}
        for rules in rows.values():
            for rule in rules:
                counts[rule] = counts.get(rule, 0) + 1
        assert stats["rules"] == counts
    # The quarantined rows are kept as they were read, next to the rules they broke.
    q = pl.read_parquet(tmp_path / "quarantine" / f"{table}.parquet")
    assert q.columns == ["source_row", *contract.TABLES[table].columns, "rules"]


def test_csv_input_is_parsed_and_unreadable_cells_are_quarantined(tmp_path: Path) -> None:
    tables = clean_tables()
    expected = run(tmp_path / "parquet", tables)
    txns = tables["consumer_transactions"].with_columns(pl.col("amount").cast(pl.String))
    tables["consumer_transactions"] = set_cell(txns, 4, "amount", "12,5")
    summary = run(tmp_path / "csv", tables, fmt="csv")
    assert quarantined(tmp_path / "csv") == {"consumer_transactions": {4: ["bad_value_amount"]}}
    assert summary["inputs"]["merchants"] == "csv"
    for name in contract.TABLES:
        if name == "outcomes":
            continue
        from_csv = pl.read_parquet(tmp_path / "csv" / "validated" / f"{name}.parquet")
        from_parquet = pl.read_parquet(tmp_path / "parquet" / "validated" / f"{name}.parquet")
        if name == "consumer_transactions":
            from_parquet = from_parquet.filter(pl.col("txn_id") != "U5")
        assert_frame_equal(from_csv, from_parquet)
    assert expected["tables"]["merchants"] == summary["tables"]["merchants"]


def test_outcomes_are_optional_and_checked_when_present(tmp_path: Path) -> None:
    tables = clean_tables()
    tables["outcomes"] = pl.DataFrame(
        {"loan_id": ["L1", "L9", "L3"], "defaulted": [False, True, True]},
        schema=contract.TABLES["outcomes"].schema,
    )
    summary = run(tmp_path, tables)
    assert quarantined(tmp_path) == {"outcomes": {1: ["unknown_loan"]}}
    assert summary["consent_excluded"]["outcomes"] == 1


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_missing_column_stops_the_run_naming_table_and_column(tmp_path: Path, fmt: str) -> None:
    tables = clean_tables()
    tables["loans"] = tables["loans"].drop("principal")
    (tmp_path / "validated").mkdir()
    (tmp_path / "validated" / "keep.txt").write_text("earlier output")
    with pytest.raises(SchemaDriftError, match=r"'loans'.*'principal'"):
        run(tmp_path, tables, fmt)
    # Nothing was written or replaced.
    assert (tmp_path / "validated" / "keep.txt").read_text() == "earlier output"
    assert not (tmp_path / "quarantine").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "validated"]


def test_mistyped_column_stops_the_run(tmp_path: Path) -> None:
    tables = clean_tables()
    tables["merchant_transactions"] = tables["merchant_transactions"].with_columns(
        pl.col("amount").cast(pl.String)
    )
    with pytest.raises(SchemaDriftError, match=r"'merchant_transactions'.*'amount'.*String"):
        run(tmp_path, tables)


def test_compatible_types_are_cast(tmp_path: Path) -> None:
    tables = clean_tables()
    tables["consumers"] = tables["consumers"].with_columns(pl.col("birth_year").cast(pl.Int64))
    tables["merchant_transactions"] = tables["merchant_transactions"].with_columns(
        pl.col("ts").dt.replace_time_zone(None).cast(pl.Datetime("ns"))
    )
    run(tmp_path, tables)
    assert quarantined(tmp_path) == {}
    out = pl.read_parquet(tmp_path / "validated" / "merchant_transactions.parquet")
    assert out.schema["ts"] == contract.TS
    assert out["ts"][0] == T("2023-02-01 10:00:00")


def test_missing_required_table_is_an_error(tmp_path: Path) -> None:
    tables = clean_tables()
    del tables["loans"]
    with pytest.raises(ValueError, match=r"expected .*loans\.parquet or \.csv"):
        run(tmp_path, tables)


def test_a_book_without_a_repayment_schedule_validates(tmp_path: Path) -> None:
    # A lender that records each loan's outcome, not its instalments, leaves repayments out.
    tables = clean_tables()
    del tables["repayments"]
    summary = run(tmp_path, tables)
    assert "repayments" not in summary["tables"]
    assert not (tmp_path / "validated" / "repayments.parquet").exists()


def test_csv_timestamps_in_common_iso_forms(tmp_path: Path) -> None:
    tables = clean_tables()
    forms = [
        "2023-02-01T10:00:00Z",  # UTC designator
        "2023-02-10 16:00:00+08:00",  # local time with offset
        "2023-03-01 08:00:00",  # no offset: UTC
        "2023-03-02T08:00:00.000000",
        "2023-03-03T08:00",
        "2023-03-03T08:00:00+0000",
    ]
    tables["consumer_transactions"] = tables["consumer_transactions"].with_columns(
        pl.Series("ts", forms)
    )
    run(tmp_path, tables, fmt="csv")
    assert quarantined(tmp_path) == {}
    out = pl.read_parquet(tmp_path / "validated" / "consumer_transactions.parquet")
    assert out["ts"].to_list() == [
        T("2023-02-01 10:00:00"),
        T("2023-02-10 08:00:00"),
        T("2023-03-01 08:00:00"),
        T("2023-03-02 08:00:00"),
        T("2023-03-03 08:00:00"),
    ]


def test_date_only_timestamp_is_a_bad_value(tmp_path: Path) -> None:
    tables = clean_tables()
    txns = tables["merchant_transactions"].with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    tables["merchant_transactions"] = set_cell(txns, 3, "ts", "2023-03-06")
    run(tmp_path, tables, fmt="csv")
    assert quarantined(tmp_path) == {"merchant_transactions": {3: ["bad_value_ts"]}}


@pytest.mark.parametrize("name", list(contract.TABLES))
def test_schemas_match_the_contract(name: str) -> None:
    from features.contract.schemas import SCHEMAS

    schema = SCHEMAS[name]
    table = contract.TABLES[name]
    assert schema.column_names() == list(table.columns)
    assert schema.primary_key() == list(table.key)
    assert {c: col.dtype for c, col in schema.columns().items()} == dict(table.schema)
    nullable = [c for c, col in schema.columns().items() if col.nullable]
    assert nullable == list(table.nullable)


# --- a lender brings the segments it has ------------------------------------------------------


@pytest.mark.parametrize(
    ("absent", "loan_rows", "repayment_rows"),
    [("merchant", [0, 2], [0, 1, 2, 6]), ("consumer", [1], [3, 4, 5])],
)
def test_one_segment_is_validated_alone_and_the_others_loans_quarantined(
    tmp_path: Path, absent: str, loan_rows: list[int], repayment_rows: list[int]
) -> None:
    from features.contract.segments import SEGMENTS

    gone = SEGMENTS[absent]
    tables = clean_tables()
    del tables[gone.entity_table], tables[gone.txn_table]
    summary = run(tmp_path, tables)
    kept = next(name for name in SEGMENTS if name != absent)
    assert summary["segments"] == [kept]
    assert absent in summary["skipped_segments"]
    assert gone.entity_table in summary["skipped_segments"][absent]
    written = sorted(p.stem for p in (tmp_path / "validated").glob("*.parquet"))
    assert written == sorted({*tables} - {"outcomes"})
    bad = quarantined(tmp_path)
    assert bad["loans"] == {key: ["segment_not_provided"] for key in loan_rows}
    assert bad["repayments"] == {key: ["loan_quarantined"] for key in repayment_rows}
    assert set(bad) == {"loans", "repayments"}


def test_transactions_without_their_entities_are_an_error(tmp_path: Path) -> None:
    tables = clean_tables()
    del tables["consumers"]
    with pytest.raises(
        ValueError, match=r"expected .*consumers\.parquet or \.csv beside consumer_transactions"
    ):
        run(tmp_path, tables)


def test_a_segment_without_its_transaction_log_is_present(tmp_path: Path) -> None:
    tables = clean_tables()
    del tables["consumer_transactions"]
    summary = run(tmp_path, tables)
    assert summary["segments"] == ["merchant", "consumer"]
    assert list(summary["no_transaction_log"]) == ["consumer"]
    assert "only credit-history and identity features" in summary["no_transaction_log"]["consumer"]
    assert "consumer_transactions" not in summary["tables"]
    assert not (tmp_path / "validated" / "consumer_transactions.parquet").exists()
    # The consumers' loans are validated as usual: nothing is quarantined for the missing log.
    assert quarantined(tmp_path) == {}
    assert summary["tables"]["loans"]["rows_out"] == clean_tables()["loans"].height - 1


def test_no_segment_at_all_is_an_error(tmp_path: Path) -> None:
    tables = clean_tables()
    for name in ("merchants", "consumers", "merchant_transactions", "consumer_transactions"):
        del tables[name]
    with pytest.raises(ValueError, match=r"expected the tables of a segment"):
        run(tmp_path, tables)
