"""Where the work runs: this process, or a Dask cluster (params ``compute``, ``--cluster``).

The same feature function, the same LightGBM parameters and the same Scorer on either engine:
:mod:`~pipeline.compute.engine` opens the engine, :mod:`~pipeline.compute.features` builds a
segment's features per entity partition, :mod:`~pipeline.compute.training` trains the booster
with ``lightgbm.dask`` and :mod:`~pipeline.compute.scoring` scores a book per row block.
"""

from pipeline.compute.engine import Engine, gather, partition_of, session, with_cluster
from pipeline.compute.features import Shards, segment_features, sharded
from pipeline.compute.scoring import score_book
from pipeline.compute.training import fit_booster

__all__ = [
    "Engine",
    "Shards",
    "fit_booster",
    "gather",
    "partition_of",
    "score_book",
    "segment_features",
    "session",
    "sharded",
    "with_cluster",
]
