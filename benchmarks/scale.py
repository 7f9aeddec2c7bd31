r"""Benchmark the feature job in one process against a Dask LocalCluster, in the same run.

    uv run python benchmarks/scale.py                               # 20M transactions
    uv run python benchmarks/scale.py --transactions 100000000 --entities 1000000 --runs 1

The world (benchmarks/_plain_world.py, contract schema) is written once under /tmp as a
validated data folder. Each measurement runs in its own subprocess, interleaved run by run:

- local: ``pipeline.compute.features.segment_features`` on the local engine, both segments,
  one snapshot (every consented entity at the end of the log), as ``longtail features
  --as-of`` builds it;
- dask: the same on a LocalCluster of ``--workers`` worker processes of 1 thread each and
  ``--partitions`` entity partitions, reached by address (as an existing cluster is); the
  cluster's start-up and the workers' first import of the code are reported apart from the
  job (a long-lived cluster pays them once).

Reported: wall time (medians; each run's dask/local ratio too), peak resident memory of the
driver and of each worker (``VmHWM``), whether the frames were equal (a hash of each), and per
task of the Dask job (its task stream) the events per second of one partition: the rate a
sizing table multiplies out (docs/operations.md, "Running on a cluster").
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Keep this folder off the path so `features` always resolves to the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

SEGMENTS = {"merchant": "merchant_transactions", "consumer": "consumer_transactions"}


def _peak_mb() -> float:
    """Peak resident memory of the calling process (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _job(data: Path, engine) -> dict:
    """Both segments' features at the end of the log on ``engine``; rows, a hash, task times."""
    import polars as pl

    from pipeline import inputs
    from pipeline.compute.features import SHARD, segment_features, sharded
    from pipeline.config import load_settings
    from pipeline.storage import Layout

    settings = load_settings(ROOT / "params.yaml")
    layout = Layout(data)
    as_of = inputs.observed_until(layout.validated)
    out: dict = {"rows": 0, "hash": 0, "partitions": []}
    for segment, table in SEGMENTS.items():
        defined = inputs.feature_definitions(
            segment, settings.features, settings.label, settings.limits
        )
        spine = inputs.scoring_spine(layout, segment, as_of, settings.application)
        with sharded(engine, layout, segment) as shards:
            events = {}
            if shards.files:  # events per partition, for the per-partition rate
                counts = pl.scan_parquet(list(shards.files)).group_by(SHARD).len().collect()
                events = dict(zip(counts[SHARD], counts["len"], strict=True))
            frame = segment_features(engine, layout, defined, spine, chunks=1, shards=shards)
        out["rows"] += frame.height
        out["hash"] ^= int(frame.hash_rows(seed=1).sum())
        out["partitions"] += [
            {"segment": segment, "partition": int(p), "events": int(n)} for p, n in events.items()
        ]
        out.setdefault("events", 0)
        out["events"] += (
            pl.scan_parquet(layout.validated / f"{table}.parquet").select(pl.len()).collect().item()
        )
    return out


def _child(mode: str, data: Path, workers: int, partitions: int) -> None:
    from pipeline.compute.engine import Engine, session
    from pipeline.config import ComputeParams

    if mode == "local":
        start = time.perf_counter()
        result = _job(data, Engine(ComputeParams()))
        result.update(seconds=time.perf_counter() - start, peak_mb=_peak_mb(), workers_mb=[])
        print(json.dumps(result))
        return
    from distributed import LocalCluster, get_task_stream

    began = time.perf_counter()
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit="6GB",
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        params = ComputeParams(
            engine="dask", address=cluster.scheduler_address, partitions=partitions
        )
        with session(params) as engine:
            # a long-lived cluster has imported the code once: do it before the clock starts
            engine.client.run(importlib.import_module, "pipeline.compute.features")
            startup = time.perf_counter() - began
            start = time.perf_counter()
            with get_task_stream(engine.client) as stream:
                result = _job(data, engine)
            seconds = time.perf_counter() - start
            workers_mb = list(engine.client.run(_peak_mb).values())
    tasks = {}
    for record in stream.data:
        (window,) = [s for s in record["startstops"] if s["action"] == "compute"]
        tasks[record["key"]] = window["stop"] - window["start"]
    for part in result["partitions"]:
        prefix = f"longtail-features-{part['segment']}-{part['partition']}-"
        (key,) = [k for k in tasks if str(k).startswith(prefix)]
        part["seconds"] = tasks[key]
    shard_seconds = [v for k, v in tasks.items() if str(k).startswith("longtail-shard-")]
    result.update(
        seconds=seconds,
        startup=startup,
        peak_mb=_peak_mb(),
        workers_mb=workers_mb,
        shard_task_seconds=sum(shard_seconds),
    )
    print(json.dumps(result))


def measure(mode: str, data: Path, workers: int, partitions: int) -> dict:
    """One mode in a fresh interpreter (its own peak memory); its JSON result."""
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "2")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--data", str(data),
         "--workers", str(workers), "--partitions", str(partitions)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _generate(data: Path, transactions: int, entities: int) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_world", HERE / "_plain_world.py")
    world = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(world)
    start = time.perf_counter()
    counts = world.write_world(data / "validated", transactions, entities)
    print(f"generated {counts} in {time.perf_counter() - start:.1f}s -> {data}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=20_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or Path(f"/tmp/longtail-scale-{args.transactions}-{args.entities}")
    if args.child:
        _child(args.child, data, args.workers, args.partitions)
        return
    if not (data / "validated" / "repayments.parquet").exists():
        _generate(data, args.transactions, args.entities)
    print(
        f"scale benchmark: {args.transactions:,} transactions, {args.entities:,} entities; "
        f"local vs LocalCluster {args.workers} workers x 1 thread, {args.partitions} partitions; "
        f"median of {args.runs} runs",
        flush=True,
    )
    results: dict[str, list[dict]] = {"local": [], "dask": []}
    for run in range(args.runs):  # interleaved, so drift in machine load hits both alike
        for mode, runs in results.items():
            result = measure(mode, data, args.workers, args.partitions)
            runs.append(result)
            brief = {k: v for k, v in result.items() if k != "partitions"}
            parts = result["partitions"]
            if parts:  # the per-partition rates of this run: events per task-second
                rates = sorted(p["events"] / p["seconds"] for p in parts if p["seconds"] > 0)
                brief["partition_events_per_s"] = {
                    "median": round(statistics.median(rates)),
                    "min": round(rates[0]),
                    "max": round(rates[-1]),
                    "tasks": len(parts),
                    "median_events": statistics.median(p["events"] for p in parts),
                    "task_seconds": round(sum(p["seconds"] for p in parts), 1),
                }
            print(f"  run {run + 1}: {mode}: {json.dumps(brief)}", flush=True)
    equal = {r["hash"] for r in results["local"] + results["dask"]}
    print(f"  same features in every run and mode: {len(equal) == 1}")
    median = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
    for mode, runs in results.items():
        workers = [max(r["workers_mb"]) for r in runs if r["workers_mb"]]
        extra = f", worker peak {max(workers) / 1024:.2f} GB" if workers else ""
        startup = [r["startup"] for r in runs if "startup" in r]
        extra += f", cluster start {statistics.median(startup):.1f} s" if startup else ""
        rate = runs[0]["events"] / median[mode]
        print(
            f"  {mode:<6} {median[mode]:7.1f} s  {rate / 1e6:5.2f} M events/s  driver peak "
            f"{max(r['peak_mb'] for r in runs) / 1024:.2f} GB{extra}"
        )
    ratios = ", ".join(
        f"{d['seconds'] / loc['seconds']:.2f}"
        for d, loc in zip(results["dask"], results["local"], strict=True)
    )
    print(f"  dask / local wall, per run: {ratios}")
    parts = [p for r in results["dask"] for p in r["partitions"]]
    rates = [p["events"] / p["seconds"] for p in parts if p["seconds"] > 0]
    shard = [r["events"] / r["shard_task_seconds"] for r in results["dask"]]
    print(
        f"  per partition (1 thread): median {statistics.median(rates) / 1e6:.2f} M events/s "
        f"(min {min(rates) / 1e6:.2f}, max {max(rates) / 1e6:.2f}) over {len(parts)} tasks of "
        f"~{statistics.median(p['events'] for p in parts) / 1e6:.2f} M events; sharding "
        f"{statistics.median(shard) / 1e6:.2f} M events/s per task-second"
    )


if __name__ == "__main__":
    main()
