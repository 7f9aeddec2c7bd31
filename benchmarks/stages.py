r"""Wall time and peak memory of each stage (validate, features, score) on one big plain world.

    uv run python benchmarks/stages.py --transactions 20000000 --entities 200000
    uv run python benchmarks/stages.py --transactions 100000000 --entities 1000000 \
        --feature-chunks 4

A plain world (benchmarks/_plain_world.py, contract schema, written piece by piece so that
generating it is bounded too) is written under ``--work``. A model is trained and registered on
a small plain world of the same shape (``--model-transactions``, its own MLflow database under
``--work``), then each stage runs on the big world as the user runs it, one ``longtail``
process at a time, with params written for the run (``features.chunks``,
``validation.chunk_rows``):

- ``validate``: raw into validated and quarantine;
- ``features <segment>``: the training features (loan spine) and the book at the end of the log;
- ``score <segment>``: ``longtail score --model-uri`` with the small world's model: features of
  every consented entity at the end of the log, then scores, reasons and limits.

Each process's peak resident memory is its own, as ``/usr/bin/time`` reports it (maximum
resident set size), and so is its wall time. Results go to ``--work``/stages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LONGTAIL = [str(Path(sys.executable).parent / "longtail")]  # the installed command
REFERENCE_TIME = "2025-01-02T00:00:00"  # the plain world's log ends on 2024-12-31


def _world(raw: Path, transactions: int, entities: int, seed: int) -> dict[str, int]:
    sys.path.insert(0, str(HERE))
    from _plain_world import write_world

    if (raw / "repayments.parquet").exists():
        return {}
    return write_world(raw, transactions, entities, seed)


def _params(work: Path, data: Path, *, chunks: int, chunk_rows: int) -> Path:
    """params.yaml with this run's data folder, MLflow database and size settings."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data_dir"] = str(data)
    params["validation"] = {**params["validation"], "reference_time": REFERENCE_TIME}
    if "chunk_rows" in params["validation"]:
        params["validation"]["chunk_rows"] = chunk_rows
    params["features"]["chunks"] = chunks
    params["mlflow"]["tracking_uri"] = f"sqlite:///{work / 'mlflow.db'}"
    data.mkdir(parents=True, exist_ok=True)
    path = data / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return path


def run(name: str, args: list[str], log: Path) -> dict[str, float | str]:
    """Run one ``longtail`` command; its wall seconds and its own peak RSS (GB).

    The command runs under ``/usr/bin/time``: a fresh small process that forks it, so the
    peak is the command's own (a child forked from this process would inherit this process's
    high-water mark, the world generation's, in ``ru_maxrss``).
    """
    report = log.with_suffix(".time")
    load = os.getloadavg()[0]
    with log.open("a") as out:
        out.write(f"\n$ longtail {' '.join(args)}\n")
        out.flush()
        timed = ["/usr/bin/time", "-o", str(report), "-f", "%e %M"]
        command = [*timed, *LONGTAIL, *args]
        code = subprocess.run(command, check=False, cwd=ROOT, stdout=out, stderr=out).returncode
    if code != 0:
        raise SystemExit(f"{name} failed with exit {code}; see {log}")
    wall, peak_kb = report.read_text().split()[-2:]
    result = {
        "stage": name,
        "wall_s": float(wall),
        "peak_gb": round(int(peak_kb) / 1e6, 2),
        "load_at_start": round(load, 1),
    }
    print(
        f"  {name:<28} {result['wall_s']:8.1f} s  {result['peak_gb']:6.2f} GB peak  "
        f"(load {load:.1f} at the start)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=20_000_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--model-transactions", type=int, default=2_000_000)
    parser.add_argument("--model-entities", type=int, default=20_000)
    parser.add_argument("--feature-chunks", type=int, default=1)
    parser.add_argument("--chunk-rows", type=int, default=5_000_000)
    parser.add_argument("--segment", default="merchant", help="the segment featurised and scored")
    parser.add_argument(
        "--stages",
        default="validate,as-of,score,train",
        help="validate, as-of (the book's features), score, train (the loan spine's features), "
        "in the order given; or 'model': only train the model",
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or Path(f"/tmp/longtail-stages-{args.transactions}-{args.entities}")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stages.log"
    stages = args.stages.split(",")

    model_uri = f"models:/longtail-{args.segment}/1"
    small = work / "model_world"
    small_params = _params(work, small, chunks=1, chunk_rows=args.chunk_rows)
    if {"score", "model"} & set(stages) and not (
        small / "registry" / f"{args.segment}.json"
    ).exists():
        print(f"model: a {args.model_transactions:,}-transaction plain world", flush=True)
        _world(small / "raw", args.model_transactions, args.model_entities, args.seed + 1)
        for step in (["validate"], ["features"], ["train", "-s", args.segment]):
            run(f"model {step[0]}", [*step, "--params", str(small_params)], log)
        run("model register", ["register", "-s", args.segment, "--params", str(small_params)], log)

    if stages == ["model"]:  # only the model (say, while the big world is being written)
        return
    data = work / "data"
    started = time.perf_counter()
    counts = _world(data / "raw", args.transactions, args.entities, args.seed)
    if counts:
        print(f"world: {counts} in {time.perf_counter() - started:.0f} s", flush=True)
    params = _params(work, data, chunks=args.feature_chunks, chunk_rows=args.chunk_rows)
    p = ["--params", str(params)]
    seg = ["-s", args.segment]
    results = []
    print(f"{args.transactions:,} transactions, {args.entities:,} entities", flush=True)
    as_of = ["--as-of", REFERENCE_TIME[:10]]
    score = ["score", *seg, "--model-uri", model_uri, "--force", "--drift-fail-on", "never"]
    commands = {
        "validate": ("validate", ["validate"]),
        "as-of": (f"features {args.segment} (as-of)", ["features", *seg, *as_of]),
        "score": (f"score {args.segment}", score),
        "train": (f"features {args.segment} (train)", ["features", *seg]),
    }
    for stage in stages:
        name, command = commands[stage]
        results.append(run(name, [*command, *p], log))
        _save(work, args, results)


def _save(work: Path, args: argparse.Namespace, results: list[dict]) -> None:
    """Add this run's results so far to ``work``/stages.json (one entry per run)."""
    summary = {
        "transactions": args.transactions,
        "entities": args.entities,
        "feature_chunks": args.feature_chunks,
        "chunk_rows": args.chunk_rows,
        "cpus": os.cpu_count(),
        "stages": results,
    }
    out = work / "stages.json"
    previous = json.loads(out.read_text()) if out.exists() else []
    if len(results) > 1:  # this run's entry so far is the last one: replace it
        previous = previous[:-1]
    out.write_text(json.dumps([*previous, summary], indent=2) + "\n")


if __name__ == "__main__":
    main()
