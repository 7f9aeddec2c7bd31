"""The source mapping: a lender's own columns, codes, formats, timezone and currency.

Unit tests apply a mapping to small frames (as a CSV is read: every cell text); CLI tests run
``longtail validate`` on the two worked examples copied into ``tmp_path``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from features.contract.vocabulary import MONEY
from pipeline import source_transform, sources
from pipeline.cli import app
from pipeline.sources import SourceMappingError

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
ROW = "source_row"
UTC = dt.UTC


def mapping(**tables: dict[str, Any]) -> sources.SourceMapping:
    return sources.parse({"tables": tables})


def statement(**columns: list[Any]) -> pl.DataFrame:
    """A bank statement as a CSV is read (text), with the row index."""
    n = len(next(iter(columns.values())))
    base = {
        "ref": [f"T{i}" for i in range(n)],
        "acc": ["A1"] * n,
        "day": ["2024-01-15T10:00:00"] * n,
        "value": ["10"] * n,
        "type": ["Salary"] * n,
    }
    base.update(columns)
    return pl.DataFrame(base).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))


TXN = {
    "columns": {
        "txn_id": "ref",
        "consumer_id": "acc",
        "ts": "day",
        "amount": "value",
        "kind": "type",
    },
    "constants": {"channel": None, "counterparty_id": None, "balance_after": None},
    "signed_amount": True,
}


def apply(raw: pl.DataFrame, m: sources.SourceMapping, table: str = "consumer_transactions"):
    return source_transform.apply(raw, table, m, text=True, row=ROW)


def txn(values: dict[str, Any], unmapped: str = "quarantine", **extra: Any):
    return sources.parse(
        {
            "unmapped": unmapped,
            "tables": {"consumer_transactions": {**TXN, **extra, "values": values}},
        }
    )


# --- value maps ----------------------------------------------------------------------------------


def test_globs_match_and_the_first_match_in_file_order_wins() -> None:
    raw = statement(type=["Card payment Lidl", "Card fee", "Salary ACME"], value=["-1", "-1", "5"])
    specific_first = txn({"kind": {"Card fee": "fee", "Card*": "purchase", "Salary*": "income"}})
    general_first = txn({"kind": {"Card*": "purchase", "Card fee": "fee", "Salary*": "income"}})
    assert apply(raw, specific_first).typed["kind"].to_list() == ["purchase", "fee", "income"]
    assert apply(raw, general_first).typed["kind"].to_list() == ["purchase", "purchase", "income"]


def test_a_glob_is_anchored_and_other_characters_are_literal() -> None:
    raw = statement(type=["Salary", "Back Salary", "Salary (x)"], value=["1", "1", "1"])
    got = apply(raw, txn({"kind": {"Salary (x)": "transfer_in", "Salary*": "income"}})).typed
    assert got["kind"].to_list() == ["income", None, "transfer_in"]


def test_a_kind_may_join_several_source_columns() -> None:
    raw = statement(type=["Card", "Card", "Cash"], op=["POS", "ONLINE", None], value=["-1"] * 3)
    m = sources.parse(
        {
            "tables": {
                "consumer_transactions": {
                    **TXN,
                    "columns": {**TXN["columns"], "kind": ["type", "op"]},
                    "values": {
                        "kind": {"Card|POS": "purchase", "Card|*": "bill_payment", "Cash|": "fee"}
                    },
                }
            }
        }
    )
    got = apply(raw, m)
    assert got.source["kind"].to_list() == ["Card|POS", "Card|ONLINE", "Cash|"]
    assert got.typed["kind"].to_list() == ["purchase", "bill_payment", "fee"]


def test_signed_amounts_give_the_direction_and_their_absolute_value() -> None:
    raw = statement(value=["-12.5", "30", "0"], type=["Salary"] * 3)
    got = apply(raw, txn({"kind": {"*": "income"}})).typed
    assert got["amount"].to_list() == [12.5, 30.0, 0.0]
    assert got["direction"].to_list() == ["out", "in", None]


def test_the_scale_applies_to_every_money_column() -> None:
    raw = statement(value=["-1234", "99"], bal=["100001", "-5"])
    m = sources.parse(
        {
            "currency": {"code": "CNY", "scale": 0.01},
            "tables": {
                "consumer_transactions": {
                    **TXN,
                    "columns": {**TXN["columns"], "balance_after": "bal"},
                    "constants": {"channel": None, "counterparty_id": None},
                }
            },
        }
    )
    got = apply(raw, m).typed
    assert got["amount"].to_list() == [12.34, 0.99]
    assert got["balance_after"].to_list() == [1000.01, -0.05]
    loans = pl.DataFrame(
        {
            "loan_id": ["L1"],
            "segment": ["consumer"],
            "entity_id": ["A1"],
            "issued_on": ["2024-01-01"],
            "principal": ["500000"],
            "term_months": ["12"],
        }
    ).with_row_index(ROW)
    assert apply(loans, m, "loans").typed["principal"].to_list() == [5000.0]
    assert set(MONEY) == {
        "merchant_transactions",
        "consumer_transactions",
        "loans",
        "repayments",
    }


def test_naive_timestamps_are_local_time_in_the_timezone_and_formats_are_read() -> None:
    raw = statement(
        day=["15.01.2024 10:00", "15.07.2024 10:00", "31.03.2024 02:30", "garbage"],
        value=["1"] * 4,
    )
    m = sources.parse(
        {
            "timezone": "Europe/Prague",
            "tables": {"consumer_transactions": {**TXN, "formats": {"ts": "%d.%m.%Y %H:%M"}}},
        }
    )
    got = apply(raw, m)
    assert got.typed["ts"].to_list() == [
        dt.datetime(2024, 1, 15, 9, tzinfo=UTC),  # CET
        dt.datetime(2024, 7, 15, 8, tzinfo=UTC),  # CEST
        None,  # the hour skipped when clocks went forward
        None,
    ]
    assert got.typed["bad_value_ts"].to_list() == [False, False, True, True]
    # Without a format: ISO; an offset keeps its instant, no offset means local time.
    iso = statement(day=["2024-01-15T10:00:00+00:00", "2024-01-15 10:00"], value=["1", "1"])
    m = sources.parse({"timezone": "Asia/Shanghai", "tables": {"consumer_transactions": TXN}})
    assert apply(iso, m).typed["ts"].to_list() == [
        dt.datetime(2024, 1, 15, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 15, 2, tzinfo=UTC),
    ]


def test_a_date_format_reads_dates() -> None:
    raw = pl.DataFrame(
        {"id": ["C1", "C2"], "opened": ["03.02.2020", "2020-02-03"], "yr": ["1980", "1990"]}
    ).with_row_index(ROW)
    m = mapping(
        consumers={
            "columns": {"consumer_id": "id", "registered_on": "opened", "birth_year": "yr"},
            "constants": {"region": "other", "consent": True},
            "formats": {"registered_on": "%d.%m.%Y"},
        }
    )
    got = apply(raw, m, "consumers")
    assert got.typed["registered_on"].to_list() == [dt.date(2020, 2, 3), None]
    assert got.typed["consent"].to_list() == [True, True]  # a constant asserts it for every row
    assert got.typed["region"].to_list() == ["other", "other"]


def test_constants_fill_columns_the_source_lacks() -> None:
    got = apply(statement(value=["1"]), txn({})).typed
    assert got["channel"].to_list() == [None]
    assert got["counterparty_id"].to_list() == [None]


@pytest.mark.parametrize(
    ("policy", "kinds", "flagged"),
    [
        ("other", ["income", "other_in", "other_out", None], [False, False, False, True]),
        ("quarantine", ["income", None, None, None], [False, True, True, True]),
    ],
)
def test_unmapped_kinds_go_to_other_by_direction_or_to_quarantine(
    policy: str, kinds: list[str | None], flagged: list[bool]
) -> None:
    raw = statement(
        type=["Salary", "Lottery", "Crypto", "Lottery"],
        value=["5", "7", "-3", "0"],  # the last one has no direction
    )
    got = apply(raw, txn({"kind": {"Salary": "income"}}, unmapped=policy))
    assert got.typed["kind"].to_list() == kinds
    assert got.typed["unmapped_kind"].to_list() == flagged
    assert got.source["kind"].to_list() == ["Salary", "Lottery", "Crypto", "Lottery"]
    report = got.report["values"]["kind"]
    assert report["applied"] == {"Salary": ["income", 1]}
    assert report["unmapped"] == {"Lottery": 2, "Crypto": 1}


@pytest.mark.parametrize(
    ("policy", "channels", "flagged"),
    [
        ("other", ["app", None, None], None),
        ("quarantine", ["app", None, None], [False, True, False]),
    ],
)
def test_unmapped_channels_are_unknown_or_quarantined(
    policy: str, channels: list[str | None], flagged: list[bool] | None
) -> None:
    m = sources.parse(
        {
            "unmapped": policy,
            "tables": {
                "merchant_transactions": {
                    "columns": {"ts": "day", "merchant_id": "acc", "txn_id": "ref", "kind": "type"},
                    "constants": {"buyer_id": None},
                    "values": {"kind": {"PAID": "sale"}, "channel": {"APP": "app"}},
                }
            },
        }
    )
    raw = statement(
        type=["PAID", "PAID", "REVERSAL"], channel=["APP", "PHONE", " "], amount=["1"] * 3
    )
    got = apply(raw, m, "merchant_transactions")
    assert got.typed["channel"].to_list() == channels
    assert ("unmapped_channel" in got.flags) == (flagged is not None)
    if flagged is not None:
        assert got.typed["unmapped_channel"].to_list() == flagged
    # Merchant kinds have no "other": always quarantined.
    assert got.typed["unmapped_kind"].to_list() == [False, False, True]
    assert got.report["values"]["channel"]["unmapped"] == {"PHONE": 1}


def test_bool_columns_take_a_value_map() -> None:
    raw = pl.DataFrame({"loan_id": ["L1", "L2", "L3"], "defaulted": ["DEF", "OK", "?"]})
    m = mapping(outcomes={"values": {"defaulted": {"DEF": True, "OK": False}}})
    got = apply(raw.with_row_index(ROW), m, "outcomes")
    assert got.typed["defaulted"].to_list() == [True, False, None]
    assert got.typed["unmapped_defaulted"].to_list() == [False, False, True]


# --- bad mapping files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tables: {payments: {}}", "tables.payments: unknown contract table"),
        (
            "tables: {loans: {columns: {amount: x}}}",
            "tables.loans.columns.amount: unknown contract column",
        ),
        (
            "tables: {consumer_transactions: {values: {kind: {Salary: salary}}}}",
            "tables.consumer_transactions.values.kind['Salary']: unknown canonical value 'salary'",
        ),
        (
            "tables: {merchant_transactions: {values: {kind: {X: income}}}}",
            "values.kind['X']: unknown canonical value 'income'",
        ),
        (
            "tables: {consumers: {values: {region: {PR: prague}}}}",
            "tables.consumers.values.region: a value map on a column that is not coded",
        ),
        (
            "tables: {loans: {columns: {loan_id: [a, b]}}}",
            "tables.loans.columns.loan_id: a list of source columns is only for coded columns",
        ),
        ("tables: {loans: {formats: {principal: '%d'}}}", "formats are for dates and timestamps"),
        ("tables: {loans: {signed_amount: true}}", "tables.loans.signed_amount"),
        ("unmapped: ignore", "unmapped: Input should be 'other' or 'quarantine'"),
        ("currency: {scale: 0}", "currency.scale: Input should be greater than 0"),
        ("timezone: Mars/Olympus", "timezone: unknown timezone 'Mars/Olympus'"),
        ("tables: {loans: {colums: {}}}", "tables.loans.colums: unknown key"),
        ("tables: {consumers: {constants: {consent: 'yes'}}}", "constants.consent"),
        ("tables: [1, 2", "not valid YAML"),
        ("- a\n- b", "expected a mapping of keys"),
    ],
)
def test_a_bad_mapping_file_is_one_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "contract.yaml"
    path.write_text(text)
    with pytest.raises(SourceMappingError) as caught:
        sources.load(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_no_mapping_file_is_the_identity(tmp_path: Path) -> None:
    assert sources.load(tmp_path) == (sources.IDENTITY, None)
    with pytest.raises(SourceMappingError, match="no such mapping file"):
        sources.load(tmp_path, tmp_path / "elsewhere.yaml")


# --- the examples through the CLI ------------------------------------------------------------


def _example(tmp_path: Path, name: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(REPO / "examples" / name, data / "raw")
    return data


def _validate(data: Path, *extra: str):
    return runner.invoke(
        app, ["validate", "--params", str(REPO / "params.yaml"), "--data", str(data), *extra]
    )


def test_the_bank_statement_validates_through_its_mapping(tmp_path: Path) -> None:
    from features.contract.vocabulary import CONSUMER_KIND_DIRECTION

    data = _example(tmp_path, "bank-statement")
    result = _validate(data)
    assert result.exit_code == 0, result.output
    summary = json.loads((data / "quarantine" / "summary.json").read_text())
    assert summary["segments"] == ["consumer"]
    tables = summary["tables"]
    assert {
        name: (s["rows_in"], s["rows_out"], s["quarantined"]) for name, s in tables.items()
    } == {
        "consumers": (8, 7, 0),
        "consumer_transactions": (37, 35, 0),  # two rows of client 1008, who did not consent
        "loans": (12, 12, 0),
        "outcomes": (12, 12, 0),
    }
    assert summary["mapping"]["currency"] == {"code": "CZK", "scale": 1.0}
    kind = summary["mapping"]["tables"]["consumer_transactions"]["values"]["kind"]
    assert kind["unmapped"] == {"Crypto exchange": 1, "Lottery winnings": 1}
    assert kind["applied"]["Returned direct debit fee"] == ["penalty", 1]
    assert kind["applied"]["Account maintenance fee"] == ["fee", 2]
    txns = pl.read_parquet(data / "validated" / "consumer_transactions.parquet")
    extended = set(list(CONSUMER_KIND_DIRECTION)[6:])
    assert extended <= set(txns["kind"])
    assert txns.filter(pl.col("txn_id") == "TR00015")["kind"].item() == "other_in"
    assert txns.filter(pl.col("txn_id") == "TR00021")["kind"].item() == "other_out"
    # Booking day 02.01.2024 in Prague is 1 January 23:00 UTC.
    first = txns.filter(pl.col("txn_id") == "TR00001")
    assert first["ts"].item() == dt.datetime(2024, 1, 1, 23, tzinfo=UTC)
    assert first["amount"].item() == 42000.0
    assert first["balance_after"].item() == 50200.0
    outcomes = pl.read_parquet(data / "validated" / "outcomes.parquet")
    assert outcomes["defaulted"].sum() == 3


def test_the_payment_platform_validates_through_its_mapping(tmp_path: Path) -> None:
    data = _example(tmp_path, "payment-platform")
    result = _validate(data)
    assert result.exit_code == 0, result.output
    summary = json.loads((data / "quarantine" / "summary.json").read_text())
    assert summary["segments"] == ["merchant"]
    events = summary["tables"]["merchant_transactions"]
    assert (events["rows_in"], events["rows_out"], events["quarantined"]) == (24, 22, 2)
    assert events["rules"] == {"unmapped_channel": 1, "unmapped_kind": 1}
    channel = summary["mapping"]["tables"]["merchant_transactions"]["values"]["channel"]
    assert channel["applied"]["IN_APP"] == ["app", 5]
    assert channel["unmapped"] == {"PHONE_ORDER": 1}
    txns = pl.read_parquet(data / "validated" / "merchant_transactions.parquet")
    assert txns.filter(pl.col("txn_id") == "EV-0001")["amount"].item() == 45.9
    assert txns.filter(pl.col("txn_id") == "EV-0004")["channel"].item() is None
    # 09:15 in Shanghai is 01:15 UTC.
    assert txns["ts"].min() == dt.datetime(2024, 3, 1, 1, 15, 2, tzinfo=UTC)
    loans = pl.read_parquet(data / "validated" / "loans.parquet")
    assert loans.filter(pl.col("loan_id") == "ADV-101")["principal"].item() == 50000.0
    # Quarantine keeps the platform's words.
    bad = pl.read_parquet(data / "quarantine" / "merchant_transactions.parquet")
    assert bad.select("txn_id", "kind", "channel", "amount").rows() == [
        ("EV-0012", "MANUAL_ADJUSTMENT", None, "1500"),
        ("EV-0016", "ORDER_PAID", "PHONE_ORDER", "3200"),
    ]


def test_explain_prints_what_was_mapped_and_what_fell_through(tmp_path: Path) -> None:
    data = _example(tmp_path, "payment-platform")
    result = runner.invoke(
        app,
        ["validate", "--params", str(REPO / "params.yaml"), "--data", str(data), "--explain"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("ORDER_PAID" in line and "sale" in line and "12" in line for line in lines)
    assert any("MANUAL_ADJUSTMENT" in line and "unmapped_kind" in line for line in lines)
    assert any("PHONE_ORDER" in line and "unmapped_channel" in line for line in lines)
    assert "currency CNY (scale 0.01)" in result.output
    assert (
        "MANUAL_ADJUSTMENT"
        not in _validate(_example(tmp_path / "again", "payment-platform")).output
    )


def test_a_bad_contract_yaml_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    data = _example(tmp_path, "bank-statement")
    path = data / "raw" / "contract.yaml"
    path.write_text(path.read_text().replace("cash_deposit", "cash_in"))
    result = _validate(data)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error in validate" in line]
    assert len(errors) == 1, result.output
    assert "unknown canonical value 'cash_in'" in errors[0]
    assert not (data / "validated").exists()


def test_a_missing_source_column_is_drift_naming_both_columns(tmp_path: Path) -> None:
    data = _example(tmp_path, "bank-statement")
    other = tmp_path / "mapping.yaml"
    other.write_text((data / "raw" / "contract.yaml").read_text().replace("account_no", "acct"))
    (data / "raw" / "contract.yaml").unlink()
    result = _validate(data, "--mapping", str(other))
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "missing column 'acct' (the source of contract column 'consumer_id')" in text


def test_a_semicolon_csv_with_decimal_commas_reads_like_the_plain_export(tmp_path: Path) -> None:
    """The bank statement exported the European way (``;``, ``1 234,50``) validates the same."""
    plain = _example(tmp_path / "plain", "bank-statement")
    assert _validate(plain).exit_code == 0
    european = _example(tmp_path / "european", "bank-statement")
    statement = pl.read_csv(european / "raw" / "statement.csv", infer_schema=False)

    def european_number(column: str) -> pl.Expr:
        value = pl.col(column).cast(pl.Float64)
        whole = value.abs().floor().cast(pl.Int64)
        groups = whole.map_elements(lambda n: f"{n:,}".replace(",", " "), return_dtype=pl.String)
        cents = ((value.abs() - value.abs().floor()) * 100).round(0).cast(pl.Int64)
        sign = pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        return pl.concat_str(sign, groups, pl.lit(","), cents.cast(pl.String).str.zfill(2)).alias(
            column
        )

    statement.with_columns(european_number("value"), european_number("balance")).write_csv(
        european / "raw" / "statement.csv", separator=";"
    )
    yaml_path = european / "raw" / "contract.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace(
            "    file: statement.csv\n",
            '    file: statement.csv\n    csv: {separator: ";", decimal: ","}\n',
        )
    )
    assert ";42 000,00;50 200,00;" in (european / "raw" / "statement.csv").read_text()
    result = _validate(european)
    assert result.exit_code == 0, result.output
    for name in ("consumer_transactions", "consumers", "loans", "outcomes"):
        assert pl.read_parquet(european / "validated" / f"{name}.parquet").equals(
            pl.read_parquet(plain / "validated" / f"{name}.parquet")
        ), name
    # Without the dialect the semicolon file reads as one column: one line that says so.
    yaml_path.write_text(
        yaml_path.read_text().replace('    csv: {separator: ";", decimal: ","}\n', "")
    )
    result = _validate(european)
    assert result.exit_code != 0
    assert "statement.csv, line 2" in result.output
    assert "csv: {separator: ';'}" in result.output
