r"""Benchmark the feature job against DuckDB and a bare Parquet scan, measured in the same run.

    uv run python benchmarks/feature_job.py                      # 20M transactions, 200k entities
    uv run python benchmarks/feature_job.py --transactions 100000000 --entities 1000000 \
        --runs 1 --skip duckdb x12            # 100M: ~16 GB peak (--chunks 4: ~9 GB)

The world is generated once under /tmp (benchmarks/_plain_world.py, contract schema). Each
measurement runs in its own subprocess (same thread count for everyone) so its peak memory
(max RSS) is its own. Reported, as medians of ``--runs`` runs:

- scan: polars reads the columns the features use from both transaction tables;
- polars: the full feature job of both segments (every catalog feature + policy inputs), one
  snapshot (every entity at the end of the log);
- polars x12: the same with twelve monthly snapshots per entity;
- duckdb: a representative slice of the same definitions in SQL (windowed sums and counts,
  refund/chargeback, active days, exact distinct partners per window, recency), one snapshot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Keep this folder off the path so `features` always resolves to the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
# The allocator setting `longtail features` runs under (pipeline.keep_freed_memory), set before
# anything imports polars; every measured child process (scan, job and DuckDB alike) inherits it
# from this process's environment.
import pipeline  # noqa: E402

pipeline.keep_freed_memory()

# as set here; importing polars later prepends polars' own defaults (the last setting wins)
MALLOC_CONF = os.environ.get("_RJEM_MALLOC_CONF", "")

# The book is scored for each segment's reference loan (params.yaml application.reference_loan):
# the application features read it from the spine. Plain YAML, so no schema import before the clock.
REFERENCE_LOANS = {
    name: (float(loan["principal"]), int(loan["term_months"]))
    for name, loan in yaml.safe_load((HERE.parent / "params.yaml").read_text())["application"][
        "reference_loan"
    ].items()
}
SEGMENTS = {
    "merchant": ("merchant_transactions", "merchants", "merchant_id"),
    "consumer": ("consumer_transactions", "consumers", "consumer_id"),
}
COLUMNS = {
    "merchant": ["merchant_id", "ts", "kind", "amount", "buyer_id", "channel"],
    "consumer": [
        "consumer_id",
        "ts",
        "kind",
        "direction",
        "amount",
        "counterparty_id",
        "channel",
        "balance_after",
    ],
}


def _as_of(data: Path) -> dt.date:
    import polars as pl

    last = (
        pl.concat(
            [
                pl.scan_parquet(data / f"{t}.parquet").select(pl.col("ts").max())
                for t, _, _ in SEGMENTS.values()
            ]
        )
        .select(pl.col("ts").max())
        .collect()
        .item()
    )
    return last.date() + dt.timedelta(days=1)


def task_scan(data: Path, _: int) -> int:
    import polars as pl

    rows = 0
    for segment, (table, _, _) in SEGMENTS.items():
        frame = pl.scan_parquet(data / f"{table}.parquet").select(COLUMNS[segment]).collect()
        rows += frame.height
    return rows


def _inputs(data: Path, segment: str):
    import polars as pl

    from features.build import Inputs

    table, entities, entity_id = SEGMENTS[segment]
    return Inputs(
        events=pl.scan_parquet(data / f"{table}.parquet").rename({entity_id: "entity_id"}),
        entities=pl.scan_parquet(data / f"{entities}.parquet").rename({entity_id: "entity_id"}),
        loans=pl.scan_parquet(data / "loans.parquet"),
        repayments=pl.scan_parquet(data / "repayments.parquet"),
        partners=(
            pl.scan_parquet(data / "merchants.parquet").select(
                pl.col("merchant_id").alias("partner_id"), pl.col("industry").alias("category")
            )
            if segment == "consumer"
            else None
        ),
    )


def definition_params():
    """The feature definitions' params from params.yaml, as `longtail features` reads them.

    Loaded before the clock starts: reading params imports the config's schemas (and with them
    scikit-learn), which is start-up cost of the CLI, not of the feature job.
    """
    from pipeline.config import load_settings
    from pipeline.inputs import definition_params as from_sections

    settings = load_settings(HERE.parent / "params.yaml")
    return from_sections(settings.features, settings.label, settings.limits)


def task_polars(data: Path, snapshots: int, chunks: int = 1, params=None) -> int:
    import polars as pl

    from features.build import build
    from features.definitions import definitions

    params = params if params is not None else definition_params()
    as_of = _as_of(data)
    dates = [
        as_of - dt.timedelta(days=30 * k) for k in range(snapshots)
    ]  # monthly snapshots back from the end of the log
    rows = 0
    for segment, (_, entities, entity_id) in SEGMENTS.items():
        ids = pl.read_parquet(data / f"{entities}.parquet", columns=[entity_id])[entity_id]
        spine = pl.DataFrame({"entity_id": ids}).join(pl.DataFrame({"as_of": dates}), how="cross")
        spine = spine.with_columns(  # the book is scored for the reference loan (params.yaml)
            principal=pl.lit(REFERENCE_LOANS[segment][0]),
            term_months=pl.lit(REFERENCE_LOANS[segment][1], dtype=pl.Int32),
        )
        frame = build(definitions(segment, params), spine, _inputs(data, segment), chunks=chunks)
        rows += frame.height
    return rows


DUCKDB_MERCHANT = """
WITH k AS (SELECT merchant_id AS entity_id, TIMESTAMPTZ '{as_of} 00:00:00+00' AS as_of
           FROM read_parquet('{data}/merchants.parquet'))
SELECT k.entity_id,
  {windows},
  sum(amount) FILTER (WHERE kind = 'refund' AND ts >= as_of - INTERVAL 90 DAY) AS refund_amt_90d,
  count(*) FILTER (WHERE kind = 'chargeback' AND ts >= as_of - INTERVAL 90 DAY) AS cb_90d,
  count(DISTINCT CAST(ts AS DATE)) FILTER (WHERE kind = 'sale' AND ts >= as_of - INTERVAL 90 DAY)
    AS active_days_90d,
  {distinct},
  count(DISTINCT buyer_id) FILTER (WHERE kind = 'sale') AS buyers_ever,
  date_diff('day', max(ts) FILTER (WHERE kind = 'sale'), as_of) AS days_since_last_sale
FROM k LEFT JOIN read_parquet('{data}/merchant_transactions.parquet') t
  ON t.merchant_id = k.entity_id AND t.ts < k.as_of
GROUP BY k.entity_id, k.as_of
"""
DUCKDB_CONSUMER = """
WITH k AS (SELECT consumer_id AS entity_id, TIMESTAMPTZ '{as_of} 00:00:00+00' AS as_of
           FROM read_parquet('{data}/consumers.parquet'))
SELECT k.entity_id,
  {windows},
  sum(amount) FILTER (WHERE direction = 'in' AND ts >= as_of - INTERVAL 90 DAY) AS in_90d,
  sum(amount) FILTER (WHERE direction = 'out' AND ts >= as_of - INTERVAL 90 DAY) AS out_90d,
  {distinct},
  count(DISTINCT counterparty_id) AS counterparties_ever,
  date_diff('day', max(ts), as_of) AS days_since_last_txn
FROM k LEFT JOIN read_parquet('{data}/consumer_transactions.parquet') t
  ON t.consumer_id = k.entity_id AND t.ts < k.as_of
GROUP BY k.entity_id, k.as_of
"""


def task_duckdb(data: Path, _: int) -> int:
    import duckdb

    as_of = _as_of(data)
    con = duckdb.connect()
    con.execute(f"SET threads = {os.environ.get('POLARS_MAX_THREADS', '2')}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    wins = (7, 30, 90, 180, 365)
    m_windows = ",\n  ".join(
        f"sum(amount) FILTER (WHERE kind = 'sale' AND ts >= as_of - INTERVAL {w} DAY) "
        f"AS sale_amt_{w}d, count(*) FILTER (WHERE kind = 'sale' AND ts >= as_of - "
        f"INTERVAL {w} DAY) AS sale_cnt_{w}d"
        for w in wins
    )
    m_distinct = ",\n  ".join(
        f"count(DISTINCT buyer_id) FILTER (WHERE kind = 'sale' AND ts >= as_of - "
        f"INTERVAL {w} DAY) AS buyers_{w}d"
        for w in (30, 90, 365)
    )
    c_windows = ",\n  ".join(
        f"sum(amount) FILTER (WHERE kind = 'income' AND ts >= as_of - INTERVAL {w} DAY) "
        f"AS income_{w}d, count(*) FILTER (WHERE ts >= as_of - INTERVAL {w} DAY) AS txn_{w}d"
        for w in wins
    )
    c_distinct = ",\n  ".join(
        f"count(DISTINCT counterparty_id) FILTER (WHERE ts >= as_of - INTERVAL {w} DAY) "
        f"AS counterparties_{w}d"
        for w in (30, 90, 365)
    )
    rows = 0
    for sql, windows, distinct in (
        (DUCKDB_MERCHANT, m_windows, m_distinct),
        (DUCKDB_CONSUMER, c_windows, c_distinct),
    ):
        query = sql.format(as_of=as_of, data=data, windows=windows, distinct=distinct)
        rows += len(con.execute(query).fetchall())
    return rows


TASKS = {"scan": task_scan, "polars": task_polars, "duckdb": task_duckdb}


def _child(task: str, data: Path, snapshots: int, chunks: int) -> None:
    params = definition_params() if task == "polars" else None
    start = time.perf_counter()
    if task == "polars":
        rows = task_polars(data, snapshots, chunks, params)
    else:
        rows = TASKS[task](data, snapshots)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": _peak_mb()}))


def _peak_mb() -> float:
    """Peak resident memory of this process, in MB.

    ``VmHWM`` belongs to the process's own address space, which ``exec`` starts afresh;
    ``ru_maxrss`` is carried over from the parent across the spawn, so it would report the
    parent's peak (the world generation) when that was larger.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(task: str, data: Path, *, snapshots: int = 1, chunks: int = 1) -> dict:
    """Run one task in a fresh interpreter; return seconds, output rows and peak RSS."""
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "2")}
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            task,
            "--data",
            str(data),
            "--snapshots",
            str(snapshots),
            "--chunks",
            str(chunks),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=20_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--chunks", type=int, default=1, help="entity chunks for the polars job")
    parser.add_argument("--skip", nargs="*", default=[], help="tasks to skip: duckdb, x12")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or Path(f"/tmp/longtail-bench-{args.transactions}-{args.entities}")
    if args.child == "generate":
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_world", HERE / "_plain_world.py")
        world = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(world)
        start = time.perf_counter()
        counts = world.write_world(data, args.transactions, args.entities)
        print(f"generated {counts} in {time.perf_counter() - start:.1f}s -> {data}")
        return
    if args.child:
        _child(args.child, data, args.snapshots, args.chunks)
        return

    if not (data / "repayments.parquet").exists():
        # in its own process: this one stays small (the allocator keeps what it frees) and
        # never imports polars, so every measured child starts alike
        subprocess.run(
            [sys.executable, __file__, "--child", "generate", "--data", str(data),
             "--transactions", str(args.transactions), "--entities", str(args.entities)],
            check=True,
        )  # fmt: skip
    threads = os.environ.get("POLARS_MAX_THREADS", "2")
    print(f"features benchmark: {args.transactions:,} transactions, {args.entities:,} entities, "
          f"{threads} threads, median of {args.runs} runs, "
          f"_RJEM_MALLOC_CONF={MALLOC_CONF!r}")  # fmt: skip
    plan = [("scan", 1), ("polars", 1)]
    if "duckdb" not in args.skip:
        plan.append(("duckdb", 1))
    if "x12" not in args.skip:
        plan.append(("polars", args.snapshots))
    results: dict[str, list[dict]] = {}
    for run in range(args.runs):  # interleaved, so drift in machine load hits every task alike
        for task, snapshots in plan:
            name = task if snapshots == 1 else f"{task} x{snapshots}"
            result = measure(task, data, snapshots=snapshots, chunks=args.chunks)
            results.setdefault(name, []).append(result)
            print(f"  run {run + 1}: {name}: {json.dumps(result)}", flush=True)
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    scan = median["scan"]
    for name, runs in results.items():
        peak = max(r["peak_mb"] for r in runs)
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        rate = args.transactions / median[name]
        print(
            f"  {name:<12} {median[name]:7.2f} s  ({each})"
            f"  {rate / 1e6:6.2f} M txn/s  peak {peak / 1024:5.2f} GB  "
            f"{median[name] / scan:5.2f}x scan  rows {runs[0]['rows']:,}"
        )  # fmt: skip
    # the same ratio within each run (the scan just before), which load swings distort less
    for name, runs in results.items():
        if name != "scan":
            each = ", ".join(
                f"{r['seconds'] / s['seconds']:.2f}x"
                for r, s in zip(runs, results["scan"], strict=True)
            )
            print(f"  {name} / scan, per run: {each}")
    polars_s = median["polars"]
    if "duckdb" in median:
        print(f"  polars vs duckdb slice: {median['duckdb'] / polars_s:.2f}x faster")
    key = f"polars x{args.snapshots}"
    if key in median:
        print(f"  {args.snapshots} snapshots / 1 snapshot: {median[key] / polars_s:.2f}x")


if __name__ == "__main__":
    main()
