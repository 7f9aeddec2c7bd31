"""The house's rules hold: the import contracts in pyproject.toml, and no god files.

The contracts (`lint-imports`, also run by `make lint`) forbid an import circle in any package,
imports against the layers pipeline -> models -> features, feature code in the contract, and
the synthetic world in production. A second test proves they bite: it plants the two circles
the project once had (the feature catalog importing the segment definitions that import it,
and a stage module importing what imports it) in a copy of the code and expects lint-imports
to refuse them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("features", "models", "pipeline", "world")
LINT = Path(sys.executable).parent / "lint-imports"
# The feature catalogs are one declaration per feature by design; every other file stays small.
MAX_LINES = 500
CATALOGS = {"features/merchant.py", "features/consumer.py"}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "300"}  # one contract a line
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_import_contracts_refuse_the_old_circles(tmp_path: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "features" / "catalog.py").open("a") as f:
        f.write("\nfrom features import definitions  # noqa\n")
    with (tmp_path / "pipeline" / "storage.py").open("a") as f:
        f.write("\nfrom pipeline.stages import score  # noqa\n")
    with (tmp_path / "world" / "synth.py").open("a") as f:
        f.write("\nfrom pipeline.stages import generate  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    out = done.stdout
    assert "No cycles are allowed in features" in out, out[-3000:]
    assert "No cycles are allowed in pipeline" in out, out[-3000:]
    assert "the catalog is a value: it knows no segment's definitions and no engine BROKEN" in out
    assert "it reads the contract, never models or pipeline BROKEN" in out


def test_no_file_over_the_size_limit() -> None:
    big = {
        str(path.relative_to(REPO)): n
        for name in PACKAGES
        for path in (REPO / name).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert set(big) <= CATALOGS, big
