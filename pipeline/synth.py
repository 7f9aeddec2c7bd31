"""A synthetic transaction world with known risk (thin first version).

Each entity has a latent risk that drives both its behaviour (sales level, refunds, income
regularity) and the repayment of its loans, so behavioural features are predictive without any
single column leaking the label. The true PD of every loan is written beside the data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.contract import CHANNELS, TABLES, TS

INDUSTRIES = ("apparel", "electronics", "food", "home", "beauty", "services")
REGIONS = ("east", "south", "north", "central", "west", "northeast")


@dataclass(frozen=True)
class WorldSpec:
    """Size and seed of a synthetic world."""

    merchants: int
    consumers: int
    months: int
    seed: int
    start: dt.date


def world_end(spec: WorldSpec) -> dt.date:
    """The first day after the world's observed period."""
    month = spec.start.month - 1 + spec.months
    return dt.date(spec.start.year + month // 12, month % 12 + 1, 1)


def _ids(prefix: str, n: int) -> pl.Series:
    return pl.select(
        pl.format("{}{}", pl.lit(prefix), pl.int_range(n).cast(pl.String).str.zfill(7))
    ).to_series()


def _entities(rng: np.random.Generator, n: int, prefix: str, start: dt.date) -> pl.DataFrame:
    since = np.datetime64(start) - rng.integers(0, 900, n).astype("timedelta64[D]")
    return pl.DataFrame(
        {
            "id": _ids(prefix, n),
            "since": pl.Series(since).cast(pl.Date),
            "region": np.array(REGIONS)[rng.integers(0, len(REGIONS), n)],
            "consent": rng.random(n) > 0.03,
            "risk": rng.normal(0.0, 1.0, n),
        }
    )


def _events(
    rng: np.random.Generator, rates: np.ndarray, start: dt.date, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw event counts per entity and timestamps with weekly and festival seasonality."""
    counts = rng.poisson(rates * days)
    owner = np.repeat(np.arange(len(rates)), counts)
    day = rng.integers(0, days, owner.size)
    dates = np.datetime64(start) + day.astype("timedelta64[D]")
    weekday = (day + dt.date.weekday(start)) % 7
    keep = rng.random(owner.size) < np.where(weekday >= 5, 1.0, 0.8)
    seconds = rng.integers(0, 86_400, owner.size).astype("timedelta64[s]")
    ts = (dates.astype("datetime64[s]") + seconds).astype("datetime64[us]")
    return owner[keep], ts[keep]


def generate(
    spec: WorldSpec,
    raw_dir: Path,
    truth_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write the contract tables to ``raw_dir`` and the loans' true PD to ``truth_dir``."""
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(spec.seed)
    end = world_end(spec)
    days = (end - spec.start).days
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    merchants = _entities(rng, spec.merchants, "M", spec.start)
    consumers = _entities(rng, spec.consumers, "C", spec.start)
    m_risk = merchants["risk"].to_numpy()
    c_risk = consumers["risk"].to_numpy()
    tables: dict[str, pl.DataFrame] = {}
    tables["merchants"] = merchants.select(
        pl.col("id").alias("merchant_id"),
        pl.col("since").alias("onboarded_on"),
        pl.Series("industry", np.array(INDUSTRIES)[rng.integers(0, 6, spec.merchants)]),
        "region",
        "consent",
    )
    tables["consumers"] = consumers.select(
        pl.col("id").alias("consumer_id"),
        pl.col("since").alias("registered_on"),
        "region",
        pl.Series("birth_year", rng.integers(1960, 2004, spec.consumers), dtype=pl.Int32),
        "consent",
    )

    say("merchant transactions")
    m_rate = np.exp(rng.normal(0.3, 0.6, spec.merchants) - 0.35 * m_risk)
    owner, ts = _events(rng, m_rate, spec.start, days)
    n = owner.size
    refund_p = 1 / (1 + np.exp(3.2 - 0.6 * m_risk[owner]))
    kind = np.where(rng.random(n) < refund_p, "refund", "sale")
    kind = np.where(rng.random(n) < 0.004 * np.exp(0.5 * m_risk[owner]), "chargeback", kind)
    buyer = rng.integers(0, spec.consumers, n)
    buyer_ids = _masked(consumers["id"].gather(buyer), rng.random(n) < 0.1)
    tables["merchant_transactions"] = _txn_frame(
        "MT",
        merchants["id"].gather(owner),
        ts,
        kind,
        np.round(rng.lognormal(4.0, 0.8, n), 2),
        rng,
        extra={"buyer_id": buyer_ids},
        entity_column="merchant_id",
    )

    say("consumer transactions")
    c_rate = np.exp(rng.normal(-0.2, 0.5, spec.consumers))
    owner, ts = _events(rng, c_rate, spec.start, days)
    n = owner.size
    income_p = 1 / (1 + np.exp(1.6 + 0.5 * c_risk[owner]))
    kinds = np.array(["purchase", "bill_payment", "transfer_out", "transfer_in"])
    kind = np.where(rng.random(n) < income_p, "income", kinds[rng.integers(0, 4, n)])
    direction = np.where(np.isin(kind, ["income", "transfer_in"]), "in", "out")
    amount = np.where(kind == "income", rng.lognormal(7.5, 0.4, n), rng.lognormal(4.5, 0.9, n))
    counterparty = merchants["id"].gather(rng.integers(0, spec.merchants, n))
    tables["consumer_transactions"] = _txn_frame(
        "CT",
        consumers["id"].gather(owner),
        ts,
        kind,
        np.round(amount, 2),
        rng,
        extra={
            "direction": pl.Series(direction),
            "counterparty_id": _masked(counterparty, kind != "purchase"),
            "balance_after": pl.Series(
                np.round(rng.lognormal(7.0 - 0.4 * c_risk[owner], 1.0, n), 2)
            ),
        },
        entity_column="consumer_id",
    )

    say("loans and repayments")
    loans, truth, repayments = _loans(rng, spec, merchants, consumers, end)
    tables["loans"] = loans
    tables["repayments"] = repayments

    written: dict[str, int] = {}
    for name, table in tables.items():
        typed = table.select(pl.col(c).cast(t) for c, t in TABLES[name].columns.items())
        typed.write_parquet(raw_dir / f"{name}.parquet")
        written[name] = typed.height
    truth.write_parquet(truth_dir / "loans.parquet")
    return written


def _masked(values: pl.Series, null_where: np.ndarray) -> pl.Series:
    return pl.select(pl.when(pl.Series(null_where)).then(None).otherwise(values)).to_series()


def _txn_frame(
    prefix: str,
    entity: pl.Series,
    ts: np.ndarray,
    kind: np.ndarray,
    amount: np.ndarray,
    rng: np.random.Generator,
    *,
    extra: dict[str, pl.Series],
    entity_column: str,
) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            entity_column: entity,
            "ts": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "kind": kind,
            "amount": amount,
            "channel": np.array(CHANNELS)[rng.integers(0, len(CHANNELS), len(kind))],
            **extra,
        }
    ).sort("ts", entity_column, maintain_order=True)
    return frame.with_columns(
        pl.format(
            "{}{}", pl.lit(prefix), pl.int_range(pl.len()).cast(pl.String).str.zfill(9)
        ).alias("txn_id")
    ).with_columns(pl.col("ts").cast(TS))


def _loans(
    rng: np.random.Generator,
    spec: WorldSpec,
    merchants: pl.DataFrame,
    consumers: pl.DataFrame,
    end: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    months = spec.months
    frames = []
    for segment, entities, base, principal_mu in (
        ("merchant", merchants, -3.6, 11.0),
        ("consumer", consumers, -4.1, 8.5),
    ):
        n = entities.height
        per_entity = rng.poisson(1.2, n)
        owner = np.repeat(np.arange(n), per_entity)
        issue_month = rng.integers(4, months, owner.size)
        issue_day = rng.integers(0, 28, owner.size)
        macro = 0.3 * np.sin(issue_month / 4.0)
        risk = entities["risk"].to_numpy()[owner]
        true_pd = 1 / (1 + np.exp(-(base + 1.1 * risk + macro)))
        frames.append(
            pl.DataFrame(
                {
                    "segment": segment,
                    "entity_id": entities["id"].gather(owner),
                    "issue_month": issue_month,
                    "issue_day": issue_day,
                    "principal": np.round(rng.lognormal(principal_mu, 0.5, owner.size), -2),
                    "term_months": rng.choice([6, 12], owner.size).astype(np.int32),
                    "true_pd": true_pd,
                    "defaults": rng.random(owner.size) < true_pd,
                    "default_installment": rng.integers(1, 7, owner.size),
                }
            )
        )
    start = pl.lit(spec.start)
    loans = (
        pl.concat(frames)
        .with_columns(
            (
                start.dt.offset_by(pl.format("{}mo", pl.col("issue_month")))
                + pl.duration(days=pl.col("issue_day"))
            ).alias("issued_on")
        )
        .filter(pl.col("issued_on") < end)
        .sort("issued_on", "segment", "entity_id")
        .with_columns(
            pl.format("L{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(8)).alias("loan_id")
        )
    )
    truth = loans.select("loan_id", "segment", "true_pd")
    inst = (
        loans.with_columns(pl.int_ranges(1, pl.col("term_months") + 1).alias("installment"))
        .explode("installment")
        .with_columns(
            pl.col("issued_on")
            .dt.offset_by(pl.format("{}mo", pl.col("installment")))
            .alias("due_on"),
            (pl.col("principal") * 1.01 / pl.col("term_months")).round(2).alias("amount_due"),
        )
    )
    m = inst.height
    late = np.minimum(rng.geometric(0.6, m) - 1, 20) * (rng.random(m) < 0.15)
    unpaid = (inst["defaults"] & (inst["installment"] >= inst["default_installment"])).to_numpy()
    paid_on = inst["due_on"].to_numpy() + late.astype("timedelta64[D]")
    repayments = (
        inst.with_columns(
            pl.Series("paid_on", paid_on).cast(pl.Date),
            pl.Series("unpaid", unpaid),
        )
        .with_columns(
            pl.when(~pl.col("unpaid") & (pl.col("paid_on") < end))
            .then(pl.col("paid_on"))
            .alias("paid_on"),
        )
        .with_columns(
            pl.when(pl.col("paid_on").is_not_null())
            .then(pl.col("amount_due"))
            .otherwise(0.0)
            .alias("amount_paid"),
        )
    )
    return (
        loans.select("loan_id", "segment", "entity_id", "issued_on", "principal", "term_months"),
        truth,
        repayments.select(
            "loan_id", "installment", "due_on", "amount_due", "paid_on", "amount_paid"
        ),
    )
