"""The booster on an engine: :func:`models.train.fit_booster` here, ``lightgbm.dask`` on Dask.

Both use :func:`models.train.lgb_params` (the same objective, leaves, rates, regularisation,
seed and the catalog's monotone constraints), and the Dask fit comes back as an ordinary
``lgb.Booster`` (``to_local().booster_``, reloaded from its text) so the Scorer, the registry
and every later stage see the same kind of artifact as after a local fit.

**Rounds.** lightgbm.dask has known hangs when it early-stops (LightGBM #4942, #7009): a
worker that stops first leaves the others waiting in a collective. So the distributed fit
never early-stops: it trains a fixed number of rounds, chosen by a local fit early-stopped on
the validation slice exactly as :func:`models.train.fit_booster` does, on at most
``compute.rounds_sample`` training rows (a seeded sample; all of them on a book that small,
then the rounds are the local path's own). The validation slice is what chooses in both
paths; only the trees' histograms are built across workers.

**Tolerance.** Distributed histograms are built from each worker's rows and its own bagging
draws, so the trees are not the local trees: the Dask booster is *not* bit-identical to the
local one. tests/test_dask.py holds it to an out-of-time AUC within 0.02 of the local model's
on the small world, and to every catalog monotone constraint
(:func:`models.train.monotonicity_violations`, the check the train stage runs on both).

**Ports.** Each worker's LightGBM listens on ``compute.listen_port`` plus the worker's index on
its host, passed as ``machines`` (explicit ports: lightgbm.dask's own search for free ports can
race). One fit runs at a time (the train stage fits sequentially).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from urllib.parse import urlparse

import lightgbm as lgb
import numpy as np

from models.train import TrainParams, lgb_params
from models.train import fit_booster as fit_local
from pipeline.compute.engine import Engine

log = logging.getLogger(__name__)

# lgb.train's names -> the scikit-learn estimator's own arguments, so no alias is given twice
# (the estimator would otherwise pass its defaults, e.g. min_child_samples=20, beside them).
_SKLEARN_NAMES = {
    "min_data_in_leaf": "min_child_samples",
    "feature_fraction": "colsample_bytree",
    "bagging_fraction": "subsample",
    "bagging_freq": "subsample_freq",
    "lambda_l1": "reg_alpha",
    "lambda_l2": "reg_lambda",
    "min_gain_to_split": "min_split_gain",
    "seed": "random_state",
}


def rounds_from_sample(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    sample: int,
    seed: int,
    **kw: object,
) -> int:
    """Boosting rounds of a local fit early-stopped on the validation slice.

    The fit uses every training row when there are at most ``sample``, else a seeded sample
    of ``sample`` rows (the rounds a larger book needs grow slowly with its size: an estimate
    on the safe side of the hang, see the module docstring).
    """
    if len(y_train) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(y_train), sample, replace=False))
        x_train, y_train = x_train[rows], y_train[rows]
    return fit_local(x_train, y_train, x_valid, y_valid, **kw).current_iteration()


def _machines(workers: Sequence[str], port: int) -> str:
    """LightGBM's ``machines``: each worker's host and ``port`` + its index on that host."""
    seen: dict[str, int] = {}
    entries = []
    for address in workers:
        host = urlparse(address).hostname
        index = seen.get(host, 0)
        seen[host] = index + 1
        entries.append(f"{host}:{port + index}")
    return ",".join(entries)


def _dask_fit(
    engine: Engine,
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    feature_names: Sequence[str],
    params: dict,
) -> lgb.Booster:
    """Train ``rounds`` rounds with lightgbm.dask on row blocks placed one per worker in turn."""
    import dask
    import dask.array as da
    from lightgbm.dask import DaskLGBMClassifier

    client = engine.client
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    blocks = np.array_split(np.arange(len(y)), min(len(y), max(engine.partitions, len(workers))))
    holders = [workers[i % len(workers)] for i in range(len(blocks))]
    xs, ys = [], []
    for rows, worker in zip(blocks, holders, strict=True):
        # scattered to a chosen worker, so every worker holds rows and ``machines`` is exact
        fx = client.scatter(x[rows], workers=[worker], hash=False)
        fy = client.scatter(y[rows], workers=[worker], hash=False)
        xs.append(da.from_delayed(dask.delayed(fx), shape=(len(rows), x.shape[1]), dtype=x.dtype))
        ys.append(da.from_delayed(dask.delayed(fy), shape=(len(rows),), dtype=y.dtype))
    used = sorted(set(holders))
    sk = {_SKLEARN_NAMES.get(k, k): v for k, v in params.items() if k != "num_threads"}
    model = DaskLGBMClassifier(
        client=client,
        n_estimators=rounds,
        machines=_machines(used, engine.params.listen_port),
        **sk,
    )
    with warnings.catch_warnings():
        # n_jobs: the estimator's default, replaced by each worker's threads (as intended)
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(da.concatenate(xs), da.concatenate(ys), feature_name=list(feature_names))
    local = model.to_local().booster_
    return lgb.Booster(model_str=local.model_to_string())


def fit_booster(
    engine: Engine,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    feature_names: Sequence[str],
    pd_monotone: Sequence[int],
    params: TrainParams,
    additive: bool = False,
) -> lgb.Booster:
    """The booster :func:`models.train.fit_booster` would fit, trained on ``engine``.

    Local: that function. Dask: the rounds a local early-stopped fit chooses
    (:func:`rounds_from_sample`), then a distributed fit of exactly that many rounds with the
    same parameters; returns an ordinary booster (see the module docstring for the tolerance).
    """
    kw = {
        "feature_names": feature_names,
        "pd_monotone": pd_monotone,
        "params": params,
        "additive": additive,
    }
    if not engine.distributed:
        return fit_local(x_train, y_train, x_valid, y_valid, **kw)
    rounds = rounds_from_sample(
        x_train,
        y_train,
        x_valid,
        y_valid,
        sample=engine.params.rounds_sample,
        seed=params.seed,
        **kw,
    )
    lgb_dict = lgb_params(params, pd_monotone, additive=additive, rows=len(y_train))
    log.info("lightgbm.dask: %d rounds on %d rows (%s)", rounds, len(y_train), engine.describe())
    return _dask_fit(engine, x_train, y_train, rounds, feature_names, lgb_dict)
