"""Load test of the one-second decision service on 127.0.0.1, with bounded concurrency.

Starts ``longtail serve`` in its own process on a trained world, then sends ``POST
/decisions`` for random consented entities of both segments (features built from the log
each time) and reports, per phase:

- ``sequential``: one request at a time (the baseline: what one applicant waits, idle server);
- ``concurrent``: ``--concurrency`` requests in flight (the sustained decisions/s), repeated
  ``--runs`` times, medians reported;

with the client's p50/p99 latency and decisions per second, and the service's own p50/p99 of
each part of a decision (state read, queue, features, predict, reasons, log write) from
``GET /latency``. Targets (issue 18): p99 < 50 ms and >= 200 decisions/s on 2 cores.

The world is ``--params`` (a params file whose data folder holds validated tables and whose
registry has a champion per segment, e.g. after ``make demo``), or one built here under
``--work`` at the size given (generate, validate, features, train, evaluate, register,
promote).

    uv run python benchmarks/online.py --merchants 2000 --consumers 8000 --months 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parent.parent


def _world(args: argparse.Namespace) -> Path:
    """A params file of a trained, registered world: ``--params`` or one built in ``--work``."""
    if args.params:
        return Path(args.params)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"
    params.write_text(
        f"extends: {REPO / 'params.yaml'}\n"
        f"data_dir: {work / 'data'}\n"
        f"world: {{merchants: {args.merchants}, consumers: {args.consumers}, "
        f"months: {args.months}, seed: 7}}\n"
        "drift: {score_psi_alert: 10.0}\n"  # a small world's score PSI is sampling noise
        f"mlflow: {{tracking_uri: 'sqlite:///{work / 'mlflow.db'}'}}\n"
        f"serve: {{decision_store: 'sqlite:///{work / 'decisions.db'}', reload_seconds: 0}}\n"
    )
    if (work / "data" / "models").exists():
        return params
    from pipeline.config import load_settings
    from pipeline.stages import evaluate, features, generate, promote, register, train, validate

    settings = load_settings(params)
    generate.run(settings)
    validate.run(settings)
    for segment in ("merchant", "consumer"):
        for stage in (features, train, evaluate, register, promote):
            stage.run(settings, segment)
    return params


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entities(params: Path, as_of: str) -> dict[str, list[str]]:
    """Consented entities of each segment that existed before ``as_of``."""
    import datetime as dt

    from pipeline.config import load_settings
    from pipeline.inputs import scoring_spine
    from pipeline.storage import Layout

    settings = load_settings(params)
    layout = Layout(settings.data_dir)
    day = dt.date.fromisoformat(as_of)
    return {
        s: scoring_spine(layout, s, day, settings.application)["entity_id"].to_list()
        for s in ("merchant", "consumer")
    }


async def _load(url: str, bodies: list[dict], concurrency: int) -> tuple[np.ndarray, float, int]:
    """Send ``bodies`` with at most ``concurrency`` in flight; latencies (ms), wall s, errors."""
    latencies: list[float] = []
    errors = 0
    todo = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for body in todo:
            start = time.perf_counter()
            response = await client.post(f"{url}/decisions", json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status_code != 200

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return np.array(latencies), wall, errors


def _bodies(entities: dict[str, list[str]], n: int, rng: random.Random) -> list[dict]:
    bodies = []
    for _ in range(n):
        segment = rng.choice(("merchant", "consumer"))
        bodies.append(
            {
                "entity_id": rng.choice(entities[segment]),
                "segment": segment,
                "amount": float(rng.choice((2000, 5000, 10000))),
                "term_months": rng.choice((6, 12)),
            }
        )
    return bodies


def _phase(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies, wall, errors = asyncio.run(_load(url, bodies, concurrency))
    parts = httpx.get(f"{url}/latency", params={"reset": "true"}, timeout=30).json()
    return {
        "requests": len(bodies),
        "concurrency": concurrency,
        "errors": errors,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "decisions_per_s": round(len(bodies) / wall, 1),
        "service_parts_ms": {
            k: {q: round(v, 2) for q, v in d.items()}
            for k, d in parts.items()
            if k not in ("count", "batch_size")
        },
        "requests_per_build": parts.get("batch_size"),
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="a trained world's params file (else built in --work)")
    parser.add_argument("--work", default="/tmp/longtail-bench-online")
    parser.add_argument("--merchants", type=int, default=2000)
    parser.add_argument("--consumers", type=int, default=8000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--as-of", help="decision date (default: the batch scoring date)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-batch", type=int, help="serve.max_batch (default: params)")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()

    params = _world(args)
    if args.as_of is None:
        from pipeline.config import load_settings
        from pipeline.inputs import default_as_of
        from pipeline.storage import Layout

        settings = load_settings(params)
        args.as_of = default_as_of(Layout(settings.data_dir), settings.scoring).isoformat()
    entities = _entities(params, args.as_of)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    if args.max_batch:
        extra = params.parent / "bench-params.yaml"
        extra.write_text(f"extends: {params.resolve()}\nserve: {{max_batch: {args.max_batch}}}\n")
        params = extra
    longtail = Path(sys.executable).parent / "longtail"
    command = [str(longtail), "serve", "--params", str(params), "--port", str(port)]
    server = subprocess.Popen([*command, "--as-of", args.as_of], env=env)
    try:
        started = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the service exited with code {server.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - started > 600:
                raise SystemExit("the service did not start within 600 s")
            time.sleep(0.5)
        startup = time.perf_counter() - started
        rng = random.Random(0)
        _phase(url, _bodies(entities, 20, rng), 2)  # warm-up (first builds, code paths)
        results = {
            "as_of": args.as_of,
            "startup_s": round(startup, 1),
            "entities": {k: len(v) for k, v in entities.items()},
            "cpus": os.cpu_count(),
            "sequential": _phase(url, _bodies(entities, args.sequential, rng), 1),
        }
        runs = [
            _phase(url, _bodies(entities, args.requests, rng), args.concurrency)
            for _ in range(args.runs)
        ]
        median = {
            key: statistics.median(r[key] for r in runs)
            for key in ("p50_ms", "p99_ms", "decisions_per_s")
        }
        results["concurrent"] = {"median": median, "runs": runs}
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print(
        f"sequential p50 {results['sequential']['p50_ms']} ms, p99 "
        f"{results['sequential']['p99_ms']} ms; {args.concurrency} in flight (median of "
        f"{args.runs}): p50 {median['p50_ms']} ms, p99 {median['p99_ms']} ms, "
        f"{median['decisions_per_s']} decisions/s"
    )


if __name__ == "__main__":
    pl.Config.set_tbl_rows(20)
    main()
