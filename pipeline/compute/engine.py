"""The engine a stage runs on: this process, or a Dask cluster (an address or a LocalCluster).

:func:`session` opens one for the length of a stage and closes what it started; a stage passes
the :class:`Engine` to :mod:`pipeline.compute.features`, :mod:`~pipeline.compute.training` and
:mod:`~pipeline.compute.scoring`, which do the same work on either. :func:`gather` is the one
place distributed results come back, so a lost worker or a stalled step becomes one clear
error (and, the stages publishing through :mod:`pipeline.storage`, nothing half-written).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.config import ComputeParams

log = logging.getLogger(__name__)


def partition_of(column: str | pl.Expr, parts: int) -> pl.Expr:
    """The hash partition (``0..parts-1``) of an entity id: stable across processes and runs.

    The same expression as :func:`features.build.build`'s entity chunks (polars' hash with seed
    0), so a partition of the distributed job holds whole entities, as a chunk does locally.
    """
    if parts < 1:
        raise ValueError(f"expected at least one partition; got {parts}")
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.hash(seed=0) % parts


@dataclass(frozen=True)
class Engine:
    """A place to run work: ``client`` is None for this process, else a Dask client."""

    params: ComputeParams
    client: Any = None  # distributed.Client when distributed

    @property
    def distributed(self) -> bool:
        """Whether work goes to a Dask cluster."""
        return self.client is not None

    @property
    def partitions(self) -> int:
        """How many partitions the distributed job cuts its data into."""
        return self.params.partitions

    def describe(self) -> str:
        """One line for logs and records: ``local`` or ``dask <scheduler> (n workers)``."""
        if self.client is None:
            return "local"
        workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
        return f"dask {self.client.scheduler.address} ({workers} workers)"


def with_cluster(params: ComputeParams, address: str | None) -> ComputeParams:
    """``params`` with ``--cluster ADDRESS`` applied: it selects the dask engine at that address."""
    if address is None:
        return params
    return params.model_copy(update={"engine": "dask", "address": address})


@contextlib.contextmanager
def session(params: ComputeParams) -> Iterator[Engine]:
    """Open the engine ``params`` name for the block, and close what this call started.

    ``engine: dask`` with an ``address`` connects to that scheduler (within ``timeout``
    seconds); without one it starts a LocalCluster of ``workers`` processes, each with
    ``threads_per_worker`` threads and ``memory_limit``, and no dashboard.
    """
    log.info("compute: %s", params.model_dump())
    if params.engine == "local":
        yield Engine(params)
        return
    from distributed import Client, LocalCluster

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # distributed logs at INFO (and warns of slow worker exits) into the CLI's handler;
        # the failures that matter come back as errors (see gather)
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        if params.address is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=params.workers,
                    threads_per_worker=params.threads_per_worker,
                    memory_limit=params.memory_limit,
                    processes=True,
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(Client(cluster, timeout=params.timeout))
        else:
            try:
                client = stack.enter_context(Client(params.address, timeout=params.timeout))
            except OSError as exc:
                raise RuntimeError(
                    f"expected a Dask scheduler at {params.address}; could not connect within "
                    f"{params.timeout}s ({exc})"
                ) from None
        engine = Engine(params, client)
        log.info("compute engine: %s", engine.describe())
        yield engine


def gather(engine: Engine, futures: Sequence[Any], what: str) -> list[Any]:
    """The results of ``futures`` in order, or one clear error naming ``what`` failed.

    A worker that died while running a task more often than the scheduler allows
    (``distributed.scheduler.allowed-failures``) raises ``KilledWorker``; data lost with a
    worker cancels the futures that needed it; a step that outlives ``compute.timeout`` stops
    too. Each becomes a :class:`RuntimeError` whose message is one line, so the CLI reports it
    and exits non-zero; the stage has published nothing. An error raised by the work itself
    (a ``ValueError`` of bad input, say) comes back as it was raised.
    """
    from concurrent.futures import CancelledError

    from distributed import KilledWorker, wait

    try:
        done = wait(list(futures), timeout=engine.params.timeout)
        del done
        return engine.client.gather(list(futures))
    except KilledWorker as exc:
        raise RuntimeError(
            f"expected every Dask task of {what} to finish; a worker died while running "
            f"{exc.task!r} (KilledWorker), so nothing was written"
        ) from None
    except CancelledError as exc:
        raise RuntimeError(
            f"expected every Dask task of {what} to finish; it was cancelled, a worker holding "
            f"its data having died or the cluster having closed ({exc}), so nothing was written"
        ) from None
    except TimeoutError:
        raise RuntimeError(
            f"expected {what} to finish within compute.timeout = {engine.params.timeout}s on "
            f"{engine.describe()}; it did not, so nothing was written"
        ) from None
    finally:
        for future in futures:
            future.release()
