"""Run every benchmark script in benchmarks/ (``make bench``), one after the other.

Each ``benchmarks/*.py`` except this file and helper modules (names starting with ``_`` or
listed in HELPERS) is run as its own process with the same interpreter; extra arguments are
passed to every script. Exits non-zero if any script fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = {"run_all.py", "scale.py"}  # scale.py: a Dask cluster and 20M rows twice; run it alone


def main() -> int:
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name not in HELPERS and not p.name.startswith("_")
    )
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *sys.argv[1:]])
        print(f"== {script.name}: exit {code} after {time.perf_counter() - start:.0f}s", flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
