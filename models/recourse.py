"""Recourse: the smallest change in what a declined entity controls that reaches the cut-off.

For every entity scoring below the approval cut-off, the search looks for changes in the
features the catalog marks actionable (never identity, connections, or a name the caller calls
protected) that lift the score to the cut-off under the monotone model:

- **Where a feature may go**: only in its score-improving direction (the catalog's monotone
  constraint, which the fitted model obeys), and only to values seen in the reference book: the
  feature's quantiles (5%, 10%, ..., 95% by default). Unconstrained features (monotone 0) and
  missing values are never moved: the model promises no direction for them.
- **How big a change is**: the share of the book it jumps over, ``|F(target) - F(current)|``
  with ``F`` the book's empirical distribution, so moves in money, days and ratios compare.
- **One, then two features**: each feature alone at its most favourable level tells which
  features can reach the cut-off; a vectorised binary search (the score is monotone along a
  feature's direction) finds the least level that does. An entity no single feature rescues
  gets pairs of its most promising features on a small grid of levels. At most
  ``max_suggestions`` alternatives per entity, cheapest first; none reaching gives an explicit
  "no change within reach".
- **Verified**: every suggestion is applied to the entity's row and scored again with the real
  :meth:`models.scorer.Scorer.score`; one that falls short is dropped, never shown.

Everything runs over batches of modified rows, one ``predict`` per batch and per set of changed
features (no Python loop over entities or trees): a change to one or two features moves only
the trees that split on them, so a large batch is scored by those trees alone (:class:`_Trees`),
which gives the same scores several times faster. The output frame and its text, from the
catalog's reason and window ("keep it at or below 3.0% for 90 days"), are
:mod:`models.recourse_text`'s.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from features.catalog import NEVER_ACTIONABLE, FeatureSpec
from models.recourse_text import CHANGE, STATUSES, table
from models.scaling import pd_to_score
from models.scorer import Scorer

__all__ = ["CHANGE", "QUANTILES", "STATUSES", "movable", "recourse"]

log = logging.getLogger(__name__)

QUANTILES: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
BATCH_ROWS = 100_000  # modified rows per predict: memory is rows x features x 8 bytes
SUBSET_ROWS = 64  # candidates changing the same features predicted by their trees only


@dataclass(frozen=True)
class _Grid:
    """The movable features and their candidate levels, in improvement space ``u = dir x value``.

    ``levels[f, :count[f]]`` ascend, so a higher index is a more favourable value;
    ``book[f]`` holds the reference values (sorted, in value space) for the size of a move.
    """

    columns: np.ndarray  # model column of each movable feature
    direction: np.ndarray  # +1 / -1: the direction that raises the score
    levels: np.ndarray  # (features, max levels), NaN-padded
    count: np.ndarray
    book: tuple[np.ndarray, ...]

    def value(self, f: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The feature value of level ``k`` of movable feature ``f``."""
        return self.direction[f] * self.levels[f, k]

    def share_moved(self, f: np.ndarray, current: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``|F(target) - F(current)|`` under each feature's reference distribution."""
        out = np.empty(len(f))
        for g in np.unique(f):  # a loop over features, vectorised over entities
            at = f == g
            ref = self.book[g]
            cdf = np.searchsorted(ref, np.stack([current[at], target[at]]), side="right")
            out[at] = np.abs(cdf[1] - cdf[0]) / len(ref)
        return out


def movable(scorer: Scorer, protected: Collection[str] = ()) -> list[int]:
    """Model columns recourse may move: actionable, constrained, used by the model, not protected.

    Identity and connections are excluded here again, whatever a saved spec says.
    """
    used = scorer.booster.feature_importance("split") > 0
    return [
        j
        for j, s in enumerate(scorer.specs)
        if s.actionable
        and s.monotone != 0
        and s.dimension not in NEVER_ACTIONABLE
        and s.name not in protected
        and used[j]
    ]


def _grid(
    x_ref: np.ndarray, columns: Sequence[int], specs: Sequence[FeatureSpec], q: np.ndarray
) -> _Grid:
    kept, levels, book = [], [], []
    for j in columns:
        values = x_ref[:, j]
        values = np.sort(values[~np.isnan(values)])
        if values.size == 0:
            continue
        u = np.unique(specs[j].monotone * np.quantile(values, q, method="inverted_cdf"))
        kept.append(j)
        levels.append(u)
        book.append(values)
    width = max((len(u) for u in levels), default=0)
    padded = np.full((len(kept), width), np.nan)
    for f, u in enumerate(levels):
        padded[f, : len(u)] = u
    cols = np.array(kept, dtype=np.int64)
    return _Grid(
        columns=cols,
        direction=np.array([specs[j].monotone for j in kept], dtype=float),
        levels=padded,
        count=np.array([len(u) for u in levels], dtype=np.int64),
        book=tuple(book),
    )


def _raw(scorer: Scorer, x: np.ndarray) -> np.ndarray:
    return scorer.booster.predict(x, raw_score=True)


def _score(scorer: Scorer, raw: np.ndarray) -> np.ndarray:
    """Scores from raw log-odds: the Scorer's own calibrator and scaling."""
    return pd_to_score(scorer.calibrator.predict(raw), scorer.scaling)


class _Trees:
    """The model's trees grouped by the features they split on, as small boosters.

    Changing features ``S`` of a row moves only the trees that split on one of them, so its
    raw score is the unchanged row's plus what those trees give for the changed row minus what
    they gave before: the same sum, over a fraction of the trees. The boosters are cut from
    LightGBM's own text model (tree blocks kept whole, renumbered); a text it cannot cut falls
    back to the whole model.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        """Split the model text into its header, tree blocks and tail."""
        self.whole = booster
        text = booster.model_to_string()
        head, _, rest = text.partition("\nTree=0\n")
        body, _, self.tail = rest.partition("\nend of trees\n")
        self.head = re.sub(r"^tree_sizes=.*\n", "", head + "\n", flags=re.MULTILINE)
        self.blocks = [b.strip() for b in ("Tree=0\n" + body).split("\n\n") if b.strip()]
        found = (re.search(r"^split_feature=(.*)$", b, re.MULTILINE) for b in self.blocks)
        self.uses = [frozenset(map(int, m.group(1).split())) if m else frozenset() for m in found]
        self.cut = len(self.blocks) == booster.num_trees() and bool(self.tail)
        self.cache: dict[frozenset[int], lgb.Booster | None] = {}

    def of(self, columns: frozenset[int]) -> lgb.Booster | None:
        """The booster of the trees splitting on any of ``columns`` (None: no tree does)."""
        if not self.cut:
            return self.whole
        if columns not in self.cache:
            keep = [b for b, used in zip(self.blocks, self.uses, strict=True) if used & columns]
            body = "\n\n".join(
                re.sub(r"^Tree=\d+", f"Tree={k}", b, flags=re.MULTILINE) for k, b in enumerate(keep)
            )
            text = f"{self.head}\n{body}\n\nend of trees\n{self.tail}"
            self.cache[columns] = lgb.Booster(model_str=text) if keep else None
        return self.cache[columns]


@dataclass(frozen=True)
class _Book:
    """The rows searched: the Scorer, the feature matrix, its raw scores and trees by feature."""

    scorer: Scorer
    x: np.ndarray
    raw: np.ndarray
    trees: _Trees

    def scores_changed(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of ``x[rows]`` with ``cols[:, t]`` set to ``values[:, t]``.

        Candidates are grouped by the features they change: a large group is predicted by the
        trees of its features only, the small ones together by the whole model, in batches of
        at most ``BATCH_ROWS`` rows.
        """
        raw = np.empty(len(rows))
        sets = np.sort(cols, axis=1)
        code = np.ravel_multi_index(tuple(sets.T), (self.x.shape[1],) * sets.shape[1])
        _, first, group = np.unique(code, return_index=True, return_inverse=True)
        sizes = np.bincount(group, minlength=len(first))
        small = np.flatnonzero(sizes[group] < SUBSET_ROWS)
        for g in np.flatnonzero(sizes >= SUBSET_ROWS):  # a loop over feature sets
            at = np.flatnonzero(group == g)
            trees = self.trees.of(frozenset(sets[first[g]].tolist()))
            raw[at] = self.raw[rows[at]] + (
                0.0 if trees is None else self._predict(trees, rows[at], cols[at], values[at], True)
            )
        if small.size:
            raw[small] = self._predict(self.trees.whole, rows[small], cols[small], values[small])
        return _score(self.scorer, raw)

    def _predict(
        self,
        booster: lgb.Booster,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        delta: bool = False,
    ) -> np.ndarray:
        out = np.empty(len(rows))
        for start in range(0, len(rows), BATCH_ROWS):
            part = slice(start, start + BATCH_ROWS)
            base = self.x[rows[part]]
            xm = base.copy()
            at = np.arange(xm.shape[0])
            for t in range(cols.shape[1]):
                xm[at, cols[part, t]] = values[part, t]
            # a few trees are predicted faster on one thread than split between threads
            threads = {"num_threads": 1} if delta else {}
            out[part] = booster.predict(xm, raw_score=True, **threads)
            if delta:
                out[part] -= booster.predict(base, raw_score=True, **threads)
        return out


@dataclass(frozen=True)
class _Options:
    """Suggestions as flat arrays: one row per changed feature of an option."""

    row: np.ndarray  # frame row of the entity
    option: np.ndarray  # 1-based rank among the entity's options
    column: np.ndarray  # model column changed
    current: np.ndarray
    target: np.ndarray

    @staticmethod
    def concat(parts: Sequence[_Options]) -> _Options:
        return _Options(*(np.concatenate([getattr(p, k) for p in parts]) for k in _FIELDS))


_FIELDS = ("row", "option", "column", "current", "target")


def _cheapest(entity: np.ndarray, cost: np.ndarray, tie: np.ndarray, k: int) -> np.ndarray:
    """Indices of each entity's ``k`` cheapest candidates and their 1-based rank."""
    order = np.lexsort((tie, cost, entity))
    ent = entity[order]
    first = np.r_[True, ent[1:] != ent[:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(ent)), 0))
    rank = np.arange(len(ent)) - starts + 1
    keep = rank <= k
    return order[keep], rank[keep]


def _singles(
    book: _Book, grid: _Grid, rows: np.ndarray, cutoff: int, k: int
) -> tuple[_Options, np.ndarray, np.ndarray]:
    """One-feature options of ``rows``; also each (row, feature) pair's best score and start.

    Returns the options, the ``(len(rows), features)`` score at each feature's most favourable
    level (-1 where the feature cannot move) and the first improving level of each pair.
    """
    n_f = len(grid.columns)
    x = book.x
    u_now = x[np.ix_(rows, grid.columns)] * grid.direction
    start = np.empty((len(rows), n_f), dtype=np.int64)
    for f in range(n_f):  # first level strictly better than the current value (NaN: none)
        start[:, f] = np.searchsorted(grid.levels[f, : grid.count[f]], u_now[:, f], "right")
    best = np.full((len(rows), n_f), -1, dtype=np.int32)
    r, f = np.nonzero(start < grid.count)
    top = grid.count[f] - 1
    at_top = book.scores_changed(rows[r], grid.columns[f][:, None], grid.value(f, top)[:, None])
    best[r, f] = at_top
    # binary search for the least level reaching the cut-off, on the pairs whose top reaches
    reach = at_top >= cutoff
    r, f, hi = r[reach], f[reach], top[reach]
    lo = start[r, f]
    while (active := lo < hi).any():
        mid = (lo + hi) // 2
        a = np.flatnonzero(active)
        s = book.scores_changed(
            rows[r[a]], grid.columns[f[a]][:, None], grid.value(f[a], mid[a])[:, None]
        )
        up = s >= cutoff
        hi[a[up]] = mid[a[up]]
        lo[a[~up]] = mid[a[~up]] + 1
    current = x[rows[r], grid.columns[f]]
    target = grid.value(f, hi)
    cost = grid.share_moved(f, current, target)
    pick, rank = _cheapest(r, cost, f, k)
    options = _Options(rows[r[pick]], rank, grid.columns[f[pick]], current[pick], target[pick])
    return options, best, start


def _pairs(
    book: _Book,
    grid: _Grid,
    rows: np.ndarray,
    best: np.ndarray,
    start: np.ndarray,
    *,
    cutoff: int,
    k: int,
    n_features: int,
    n_levels: int,
) -> tuple[_Options, np.ndarray]:
    """Two-feature options of ``rows``, for which no single feature reached the cut-off.

    Each row's ``n_features`` most promising features (best score alone) are paired; each
    feature of a pair gets ``n_levels`` levels from its first improving one to its most
    favourable. A pair whose two most favourable levels fall short is dropped; on the others a
    staircase walk (the score rises with either level) visits the reaching frontier in at most
    ``2 n_levels - 1`` steps, each one batch predict over every pair, and keeps its cheapest
    cell. Returns the options and each row's best score found.
    """
    n_rows, n_f = best.shape
    found = best.max(axis=1, initial=-1)
    m = min(n_features, n_f)
    if n_rows == 0 or m < 2:
        return _empty(), found
    tie = np.broadcast_to(np.arange(n_f), best.shape)
    top = np.lexsort((tie, -best), axis=1)[:, :m]  # by best score alone, ties in catalog order
    first, second = np.array(list(itertools.combinations(range(m), 2))).T
    row = np.repeat(np.arange(n_rows), len(first))
    f1, f2 = top[:, first].ravel(), top[:, second].ravel()
    movable_ = (best[row, f1] >= 0) & (best[row, f2] >= 0)
    row, f1, f2 = row[movable_], f1[movable_], f2[movable_]
    x = book.x
    c1, c2 = x[rows[row], grid.columns[f1]], x[rows[row], grid.columns[f2]]
    cols = grid.columns[np.stack([f1, f2], 1)]

    def level(f: np.ndarray, at: np.ndarray, step: np.ndarray) -> np.ndarray:
        s, top_ = start[row[at], f[at]], grid.count[f[at]] - 1
        return s + np.floor(step / (n_levels - 1) * (top_ - s) + 0.5).astype(np.int64)

    def evaluate(at: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, ...]:
        v1, v2 = grid.value(f1[at], level(f1, at, i)), grid.value(f2[at], level(f2, at, j))
        score = book.scores_changed(rows[row[at]], cols[at], np.stack([v1, v2], 1))
        return score, v1, v2

    everything = np.arange(len(row))
    corner = np.full(len(row), n_levels - 1)
    score, _, _ = evaluate(everything, corner, corner)
    np.maximum.at(found, row, score)
    hopeful = score >= cutoff
    i, j = corner.copy(), np.zeros(len(row), dtype=np.int64)
    cost = np.full(len(row), np.inf)
    cell = np.zeros((len(row), 2))
    while (active := np.flatnonzero(hopeful & (i >= 0) & (j < n_levels))).size:
        s, v1, v2 = evaluate(active, i[active], j[active])
        up = s >= cutoff
        reached = active[up]
        c = grid.share_moved(f1[reached], c1[reached], v1[up]) + grid.share_moved(
            f2[reached], c2[reached], v2[up]
        )
        better = c < cost[reached]
        won = reached[better]
        cost[won] = c[better]
        cell[won] = np.stack([v1[up][better], v2[up][better]], 1)
        i[reached] -= 1
        j[active[~up]] += 1
    ok = np.flatnonzero(np.isfinite(cost))
    pick, rank = _cheapest(row[ok], cost[ok], f1[ok] * n_f + f2[ok], k)
    pick = ok[pick]
    options = _Options(
        rows[np.repeat(row[pick], 2)],
        np.repeat(rank, 2),
        cols[pick].ravel(),
        np.stack([c1[pick], c2[pick]], 1).ravel(),
        cell[pick].ravel(),
    )
    return options, found


def _empty() -> _Options:
    return _Options(*(np.array([], dtype=d) for d in (np.int64, np.int64, np.int64, float, float)))


def _verify(
    scorer: Scorer, frame: pl.DataFrame, x: np.ndarray, options: _Options, cutoff: int
) -> tuple[_Options, np.ndarray]:
    """Apply each option to its entity's row and score it with :meth:`Scorer.score`.

    Returns the options that reach the cut-off and, per change row, its option's score.
    """
    if len(options.row) == 0:
        return options, np.array([], dtype=np.int32)
    key = options.row * 1_000 + options.option
    keys, which = np.unique(key, return_inverse=True)
    opt_rows = keys // 1_000
    touched = np.unique(options.column)
    xm = x[np.ix_(opt_rows, touched)]
    xm[which, np.searchsorted(touched, options.column)] = options.target
    names = [scorer.feature_names[j] for j in touched]
    changed = frame[opt_rows].with_columns(
        pl.Series(name, xm[:, t]) for t, name in enumerate(names)
    )
    after = scorer.score(changed, reasons=False)["score"].to_numpy()
    ok = after[which] >= cutoff
    if not ok.all():
        log.warning(
            "recourse: %d suggestion(s) fell short of the cut-off when re-scored; dropped",
            len(np.unique(which[~ok])),
        )
    kept = _Options(*(getattr(options, f)[ok] for f in _FIELDS))
    return kept, after[which][ok]


def recourse(
    scorer: Scorer,
    features: pl.DataFrame,
    cutoff: int,
    *,
    reference: pl.DataFrame | None = None,
    max_suggestions: int = 3,
    protected: Collection[str] = (),
    quantiles: Sequence[float] = QUANTILES,
    pair_features: int = 4,
    pair_levels: int = 8,
) -> pl.DataFrame:
    """Recourse for every row of ``features`` scoring below ``cutoff`` (one output row per row).

    ``features`` holds the model's features and policy inputs (as for :meth:`Scorer.score`)
    and ``entity_id``; ``reference`` is the book whose values a feature may move to (default:
    ``features`` itself); ``protected`` names features never to suggest, whatever the catalog
    says. Returns ``entity_id`` (and ``as_of``), ``recourse_status`` (above_cutoff, change,
    out_of_reach, or knocked_out: above the cut-off but declined for arrears), ``recourse``
    (plain text; null above the cut-off) and ``recourse_changes`` (one struct per changed
    feature: option, feature, current, target, window_days, score_after), at most
    ``max_suggestions`` options of one, else two, features each; the rows are ``features``'s,
    in its order.
    """
    lo, hi = scorer.scaling.min_score, scorer.scaling.max_score
    if not lo < cutoff <= hi:
        raise ValueError(f"expected a cut-off in ({lo}, {hi}]; got {cutoff!r}")
    if not 1 <= max_suggestions <= 20:
        raise ValueError(f"expected max_suggestions in 1..20; got {max_suggestions!r}")
    if pair_features < 2 or pair_levels < 2:
        raise ValueError(
            f"expected pair_features and pair_levels >= 2; got {pair_features}, {pair_levels}"
        )
    q = np.asarray(quantiles, dtype=float)
    if q.size == 0 or not ((q > 0) & (q < 1)).all():
        raise ValueError(f"expected quantiles strictly between 0 and 1; got {list(quantiles)}")
    if "entity_id" not in features.columns:
        raise ValueError(f"expected an entity_id column; got {features.columns[:10]}")
    scorer.check_columns(features)
    if reference is not None:
        scorer.check_columns(reference)
    x = scorer.matrix(features)
    raw = _raw(scorer, x)
    score = _score(scorer, raw)
    book = _Book(scorer, x, raw, _Trees(scorer.booster))
    rows = np.flatnonzero(score < cutoff)
    grid = _grid(
        x if reference is None else scorer.matrix(reference),
        movable(scorer, protected),
        scorer.specs,
        np.unique(q),
    )
    singles, best, start = _singles(book, grid, rows, cutoff, max_suggestions)
    rest = ~np.isin(rows, singles.row)
    pairs, best_rest = _pairs(
        book, grid, rows[rest], best[rest], start[rest], cutoff=cutoff,
        k=max_suggestions, n_features=pair_features, n_levels=pair_levels,
    )  # fmt: skip
    options, after = _verify(scorer, features, x, _Options.concat([singles, pairs]), cutoff)
    best_all = np.full(features.height, -1, dtype=np.int32)
    best_all[rows] = best.max(axis=1, initial=-1)
    best_all[rows[rest]] = best_rest
    changes = pl.DataFrame(
        {"row": options.row, "option": options.option.astype(np.int32), "column": options.column,
         "current": options.current, "target": options.target,
         "score_after": after.astype(np.int32)}
    )  # fmt: skip
    out = table(
        features, scorer.specs, scorer.segment, score, best_all, changes, cutoff,
        arrears=features["current_dpd"].cast(pl.Float64).to_numpy(),
        knockout_dpd=scorer.policy.knockout_dpd,
    )  # fmt: skip
    counts = dict(out["recourse_status"].value_counts().iter_rows())
    log.info("recourse for %s: %s", scorer.segment, counts)
    return out
