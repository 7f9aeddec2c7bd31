"""Benchmark the synthetic-world generator: wall time, peak memory and rows written.

Each run is a fresh subprocess (so peak memory is that run's own), writing to a temporary folder
that is removed afterwards. The median over the runs is reported; the target from issue 3 is at
least 20 million transactions in under a minute at 100k merchants + 100k consumers + 24 months.

    uv run python benchmarks/generate.py                      # 100k + 100k, 24 months, 3 runs
    uv run python benchmarks/generate.py --merchants 3000 --consumers 15000 --months 30 --runs 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS = 20_000_000
TARGET_SECONDS = 60.0


def child(args: argparse.Namespace) -> None:
    from world.synth import WorldSpec, generate

    spec = WorldSpec(
        merchants=args.merchants,
        consumers=args.consumers,
        months=args.months,
        seed=args.seed,
        start=datetime.date.fromisoformat(args.start),
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = generate(spec, Path(tmp) / "raw", Path(tmp) / "truth")
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime  # robust to other load on the machine
    print(
        json.dumps(
            {"seconds": seconds, "cpu": cpu, "peak_mb": peak_mb, "rows": rows, "bytes": size}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchants", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    results = []
    for i in range(args.runs):
        cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        txns = result["rows"]["merchant_transactions"] + result["rows"]["consumer_transactions"]
        print(
            f"run {i + 1}: {result['seconds']:.1f} s wall, {result['cpu']:.1f} s CPU, "
            f"peak {result['peak_mb']:.0f} MB, "
            f"{txns / 1e6:.1f} M transactions, {result['bytes'] / 1e6:.0f} MB on disk"
        )
    seconds = statistics.median(r["seconds"] for r in results)
    peak = statistics.median(r["peak_mb"] for r in results)
    cpu = statistics.median(r["cpu"] for r in results)
    rows = results[0]["rows"]
    txns = rows["merchant_transactions"] + rows["consumer_transactions"]
    print(
        f"\n{args.merchants} merchants + {args.consumers} consumers, {args.months} months, "
        f"seed {args.seed}: median {seconds:.1f} s wall ({cpu:.1f} s CPU, whole process), "
        f"peak {peak:.0f} MB over {args.runs} run(s)"
    )
    print(f"rows: {json.dumps(rows)}")
    print(f"throughput: {txns / seconds / 1e6:.2f} M transactions/s")
    print(f"load average when done: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.merchants >= 100_000 and args.consumers >= 100_000:
        ok = txns >= TARGET_ROWS and seconds < TARGET_SECONDS
        verdict = "meets" if ok else "MISSES"
        print(f"target (>= 20 M transactions in < 60 s): {verdict}")


if __name__ == "__main__":
    main()
