"""Per-feature attributions of a LightGBM model's raw score: exact TreeSHAP and a fast path one.

Both return the layout of LightGBM's ``pred_contrib``: ``(rows, n_features + 1)``, one column
per feature in log-odds of default, then the expected value (the bias), and every row sums to
the model's raw score.

- ``exact`` is LightGBM's own TreeSHAP (``pred_contrib=True``). It is the reference, and slow:
  a few hundred rows per second for a 300-tree, 63-leaf model on two cores.
- ``fast`` is the path attribution of Saabas: walking from the root to the leaf a row falls in,
  each split moves the node's expected value (the count-weighted mean of the leaves below it),
  and the move is credited to the split's feature. Every leaf's path contributions are
  summed once when the model is loaded into a ``(total leaves, features)`` table, so
  attributing a batch is one ``pred_leaf`` pass (as fast as ``predict``) plus a gather-and-sum:
  per feature, its column of the table taken at the leaves of only the trees that split on it
  (``numpy.take`` over a leaf index held tree-major, features shared out over threads; numpy
  releases the GIL there), which touches each row's handful of path entries per tree and
  nothing else. A model too big for a dense table falls back to a sparse product. The
  expected value is the same one TreeSHAP uses (the count-weighted mean
  of the leaves), so the two differ only in how a path's change is split between its features;
  ``benchmarks/attribution.py`` measures how often their top reasons agree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
from scipy import sparse

Attribution = Literal["fast", "exact"]
ATTRIBUTIONS: tuple[str, ...] = ("fast", "exact")
log = logging.getLogger(__name__)
_COMPILE_LOCK = threading.Lock()
DENSE_MAX_ENTRIES = 1 << 24  # (features x total leaves) up to 128 MB of float64: gather per feature


def _node_value(node: dict[str, Any], memo: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """(expected value, data count) of a dumped node: count-weighted mean of its leaves.

    This is LightGBM's own ``Tree::ExpectedValue`` rule (leaf counts as weights), applied at
    every node, so the root's value is the bias that TreeSHAP reports.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if "leaf_value" in node:
        out = (float(node["leaf_value"]), float(node.get("leaf_count", 0.0)))
    else:
        left_value, left_count = _node_value(node["left_child"], memo)
        right_value, right_count = _node_value(node["right_child"], memo)
        total = left_count + right_count
        value = (
            (left_value * left_count + right_value * right_count) / total
            if total > 0
            else (left_value + right_value) / 2.0
        )
        out = (value, total)
    memo[key] = out
    return out


def _leaf_paths(
    tree: dict[str, Any],
) -> tuple[int, float, list[tuple[int, int, float]]]:
    """Number of leaves, root value, and ``(leaf, feature, contribution)`` path entries.

    Runs once per tree at load time (a walk over nodes, not over rows).
    """
    memo: dict[int, tuple[float, float]] = {}
    root = tree["tree_structure"]
    root_value, _ = _node_value(root, memo)
    entries: list[tuple[int, int, float]] = []
    stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
    while stack:
        node, path = stack.pop()
        if "leaf_value" in node:
            leaf = int(node.get("leaf_index", 0))
            entries.extend((leaf, feature, amount) for feature, amount in path.items())
            continue
        feature = int(node["split_feature"])
        value = memo[id(node)][0]
        for side in ("left_child", "right_child"):
            child = node[side]
            step = _node_value(child, memo)[0] - value
            child_path = dict(path)
            child_path[feature] = child_path.get(feature, 0.0) + step
            stack.append((child, child_path))
    return int(tree["num_leaves"]), root_value, entries


@dataclass(frozen=True)
class PathAttribution:
    """Precomputed per-leaf path contributions of one binary LightGBM model.

    ``table`` is ``(total leaves, n_features)`` CSR: row ``leaf_offsets[t] + leaf`` holds the
    contributions of the path to that leaf of tree ``t``. ``expected_value`` is the sum of the
    trees' root values.
    """

    n_features: int
    leaf_offsets: np.ndarray
    table: sparse.csr_matrix
    expected_value: float
    columns: np.ndarray | None = field(default=None, repr=False, compare=False)
    """``(features, total leaves)`` dense transpose of ``table`` (None when too big)."""
    trees_of: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    """Per feature, the trees whose paths credit it (the only ones worth gathering)."""

    def column(self, feature: int) -> np.ndarray:
        """Feature ``feature``'s contribution at every leaf, ``(total leaves,)``."""
        if self.columns is not None:
            return self.columns[feature]
        return self.table[:, [feature]].toarray().ravel()

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> PathAttribution:
        """Build the table from the booster's dumped trees (once per model)."""
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError(
                "expected a binary model with one tree per iteration; "
                f"got {dump.get('num_tree_per_iteration')}"
            )
        trees = dump["tree_info"]
        if not trees:
            raise ValueError("expected a booster with at least one tree; got none")
        n_features = int(dump["max_feature_idx"]) + 1
        offsets = np.zeros(len(trees), dtype=np.int64)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        expected = 0.0
        start = 0
        for t, tree in enumerate(trees):
            offsets[t] = start
            n_leaves, root_value, entries = _leaf_paths(tree)
            expected += root_value
            for leaf, feature, amount in entries:
                rows.append(start + leaf)
                cols.append(feature)
                vals.append(amount)
            start += n_leaves
        table = sparse.csr_matrix(
            (np.asarray(vals, dtype=float), (np.asarray(rows), np.asarray(cols))),
            shape=(start, n_features),
        )
        table.sum_duplicates()
        tree_of_leaf = np.repeat(np.arange(len(trees)), np.diff(np.r_[offsets, start]))
        credited = np.zeros((n_features, len(trees)), dtype=bool)
        coo = table.tocoo()
        credited[coo.col[coo.data != 0], tree_of_leaf[coo.row[coo.data != 0]]] = True
        trees_of = tuple(np.flatnonzero(row) for row in credited)
        columns = None
        if n_features * start <= DENSE_MAX_ENTRIES:
            columns = np.ascontiguousarray(table.toarray().T)
        return cls(
            n_features=n_features,
            leaf_offsets=offsets,
            table=table,
            expected_value=expected,
            columns=columns,
            trees_of=trees_of,
        )

    def contributions(self, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
        """``(rows, n_features + 1)`` contributions of each row, bias last (pred_contrib layout).

        ``booster`` must be the model the table was built from; its ``pred_leaf`` routes each
        row (missing values included) exactly as ``predict`` does.
        """
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-d matrix with {self.n_features} columns; got shape {x.shape}"
            )
        out = np.empty((x.shape[0], self.n_features + 1))
        out[:, -1] = self.expected_value
        if x.shape[0] == 0:
            return out
        leaves = np.asarray(booster.predict(x, pred_leaf=True), dtype=np.int64)
        leaves = leaves.reshape(x.shape[0], -1)
        if leaves.shape[1] != self.leaf_offsets.size:
            raise ValueError(
                f"expected the booster the table was built from ({self.leaf_offsets.size} "
                f"trees); got one with {leaves.shape[1]}"
            )
        if self.columns is not None:
            self._gather(self.columns, leaves, out)
            return out
        n_rows, n_trees = leaves.shape
        hits = sparse.csr_matrix(
            (
                np.ones(n_rows * n_trees),
                (leaves + self.leaf_offsets).ravel(),
                np.arange(0, n_rows * n_trees + 1, n_trees),
            ),
            shape=(n_rows, self.table.shape[0]),
        )
        out[:, :-1] = (hits @ self.table).toarray()
        return out

    def _gather(self, columns: np.ndarray, leaves: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out[:, :-1]``: per feature, its table column summed over its trees' leaves."""
        leaf_rows = np.ascontiguousarray((leaves + self.leaf_offsets).T.astype(np.intp))

        def features(part: range) -> None:
            for f in part:
                trees = self.trees_of[f]
                if trees.size == 0:
                    out[:, f] = 0.0
                elif trees.size == 1:
                    out[:, f] = columns[f].take(leaf_rows[trees[0]])
                else:
                    out[:, f] = columns[f].take(leaf_rows[trees]).sum(axis=0)

        workers = max(1, min(os.cpu_count() or 1, 8))
        if workers == 1 or leaves.shape[0] < 4096:
            features(range(self.n_features))
            return
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(features, [range(w, self.n_features, workers) for w in range(workers)]))


def compiled_forest(text: str, folder: Path, name: str) -> Any:
    """The LightGBM model ``text`` compiled by lleaves to raw scores, cached in ``folder``.

    Kept as ``folder/name.txt`` (what lleaves parses) and ``folder/name.bin`` (the binary; lleaves
    never checks a cache for staleness, so ``folder`` must be specific to one model: see
    :func:`forest_folder`). A miss compiles into a temporary name and renames it into place, so
    a crash or a concurrent process never leaves a half-written file under the final name.
    """
    import lleaves

    folder.mkdir(parents=True, exist_ok=True)
    model_file, binary = folder / f"{name}.txt", folder / f"{name}.bin"

    def compile_to(path: Path) -> None:
        log.info("compiling %s/%s with lleaves (once per model version)", folder.name, name)
        lleaves.Model(model_file=str(model_file)).compile(cache=str(path), raw_score=True)

    with _COMPILE_LOCK:
        for target, write in (
            (model_file, lambda path: path.write_text(text)),
            (binary, compile_to),
        ):
            if target.exists():
                continue
            fd, temporary = tempfile.mkstemp(prefix=f".{target.name}-", dir=folder)
            os.close(fd)
            os.unlink(temporary)  # lleaves writes its binary only where no file exists
            try:
                write(Path(temporary))
                os.replace(temporary, target)
            finally:
                Path(temporary).unlink(missing_ok=True)
        model = lleaves.Model(model_file=str(model_file))
        model.compile(cache=str(binary), raw_score=True)
    return model


def forest_folder(booster: lgb.Booster, cache: Path) -> Path:
    """The folder under ``cache`` for one model: a hash of its text, the CPU and the compiler."""
    from importlib.metadata import version

    from llvmlite import binding

    stamp = [binding.get_host_cpu_name(), version("lleaves"), version("llvmlite")]
    text = booster.model_to_string()
    return Path(cache) / hashlib.sha256("\n".join([text, *stamp]).encode()).hexdigest()[:24]


def feature_forests(booster: lgb.Booster, paths: PathAttribution) -> dict[int, str]:
    """Per credited feature, a LightGBM model text whose raw prediction is its path attribution.

    Feature ``f``'s contribution is a sum over the trees that credit it of a value per leaf (its
    column of the table), so it is itself a forest: those trees with their leaf values replaced.
    Written in LightGBM's own text format (``tree_sizes`` recomputed), it predicts with LightGBM
    or compiles with lleaves like any model.
    """
    text = booster.model_to_string()
    lines = text.split("\n")
    sizes = [
        int(v)
        for v in next(ln for ln in lines if ln.startswith("tree_sizes=")).split("=")[1].split()
    ]
    start = text.index("Tree=0\n")
    head, tail = text[:start], text[start + sum(sizes) :]
    blocks, at = [], start
    for i, size in enumerate(sizes):
        blocks.append(text[at : at + size])
        if not blocks[-1].startswith(f"Tree={i}\n"):
            raise ValueError(f"expected tree {i} at byte {at} of the model text; got another")
        at += size
    n_leaves = np.diff(np.r_[paths.leaf_offsets, paths.table.shape[0]])
    out: dict[int, str] = {}
    for feature, trees in enumerate(paths.trees_of):
        if trees.size == 0:
            continue
        column = paths.column(feature)
        chosen = []
        for k, t in enumerate(trees):
            values = column[paths.leaf_offsets[t] : paths.leaf_offsets[t] + n_leaves[t]]
            body = [
                f"Tree={k}"
                if j == 0
                else (
                    "leaf_value=" + " ".join(repr(float(v)) for v in values)
                    if ln.startswith("leaf_value=")
                    else ln
                )
                for j, ln in enumerate(blocks[t].split("\n"))
            ]
            chosen.append("\n".join(body))
        header = "\n".join(
            "tree_sizes=" + " ".join(str(len(b)) for b in chosen)
            if ln.startswith("tree_sizes=")
            else ln
            for ln in head.split("\n")
        )
        out[feature] = header + "".join(chosen) + tail
    return out


@dataclass(frozen=True)
class CompiledPaths:
    """The path attribution as one lleaves-compiled forest per credited feature.

    Same numbers as :meth:`PathAttribution.contributions` (up to the order of a sum), with no
    ``pred_leaf`` pass and no gather: each feature's forest evaluates like ``predict`` does,
    so attributing costs a few compiled predicts. Built (compiled once, then loaded) by
    :meth:`build` into the model's :func:`forest_folder`.
    """

    n_features: int
    expected_value: float
    forests: tuple[tuple[int, Any], ...]

    @classmethod
    def build(cls, booster: lgb.Booster, paths: PathAttribution, cache: Path) -> CompiledPaths:
        """Compile (or load from ``cache``) every credited feature's forest."""
        folder = forest_folder(booster, cache)
        forests = tuple(
            (f, compiled_forest(text, folder, f"attribution-{f}"))
            for f, text in feature_forests(booster, paths).items()
        )
        return cls(paths.n_features, paths.expected_value, forests)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """``(rows, n_features + 1)`` contributions, bias last (pred_contrib layout)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-d matrix with {self.n_features} columns; got shape {x.shape}"
            )
        out = np.zeros((x.shape[0], self.n_features + 1))
        out[:, -1] = self.expected_value
        if x.shape[0] == 0:
            return out
        for feature, forest in self.forests:
            out[:, feature] = forest.predict(x)
        return out


def exact_contributions(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """LightGBM's exact TreeSHAP, ``(rows, n_features + 1)`` with the bias last."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != booster.num_feature():
        raise ValueError(
            f"expected a 2-d matrix with {booster.num_feature()} columns; got shape {x.shape}"
        )
    if x.shape[0] == 0:
        return np.empty((0, x.shape[1] + 1))
    return np.asarray(booster.predict(x, pred_contrib=True), dtype=float)
