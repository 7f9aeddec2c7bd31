"""Where the work runs: this process, or a Dask cluster (params ``compute``, ``--cluster``).

The same feature function, the same LightGBM parameters and the same Scorer on either engine:
:mod:`~pipeline.compute.engine` opens the engine, :mod:`~pipeline.compute.features` builds a
segment's features per entity partition, :mod:`~pipeline.compute.training` trains the booster
with ``lightgbm.dask`` and :mod:`~pipeline.compute.scoring` scores a book per row block. Import
the module you need: this package imports none of them, so the features stage does not pull in
the models' code.
"""
