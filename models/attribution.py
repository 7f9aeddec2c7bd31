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

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
from scipy import sparse

Attribution = Literal["fast", "exact"]
ATTRIBUTIONS: tuple[str, ...] = ("fast", "exact")
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
        columns = None
        trees_of: tuple[np.ndarray, ...] = ()
        if n_features * start <= DENSE_MAX_ENTRIES:
            columns = np.ascontiguousarray(table.toarray().T)
            tree_of_leaf = np.repeat(np.arange(len(trees)), np.diff(np.r_[offsets, start]))
            credited = np.zeros((n_features, len(trees)), dtype=bool)
            coo = table.tocoo()
            credited[coo.col[coo.data != 0], tree_of_leaf[coo.row[coo.data != 0]]] = True
            trees_of = tuple(np.flatnonzero(row) for row in credited)
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
