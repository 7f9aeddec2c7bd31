"""The one-second decision: score, price and explain an application from the applicant's log.

:class:`DecisionService` turns a request (entity, segment, the loan asked for, events since
the last batch) into a decision with the batch code: the features come from
:func:`features.build.build` on the rows :class:`~pipeline.online.OnlineState` slices for the
entity, the decision from the registered model's :class:`~models.scorer.Scorer`. Every decision
is appended to the decision log (:mod:`pipeline.decisions`). :func:`create_app` puts it behind
HTTP (FastAPI): ``POST /decisions``, ``GET /decisions/{id}``, ``POST /decisions/{id}/review``,
``GET /latency``.

Requests that arrive while the service is busy are built together: one worker per segment
takes every request queued meanwhile (up to ``serve.max_batch``, distinct entities) into one
build, whose cost is mostly fixed (planning and running ~300 polars expressions), so a batch
of 16 costs little more than one. An idle service builds each request at once; nothing waits
for company.

The model is loaded once per process from the registry alias (``serve.alias``, champion by
default) and a background thread looks the alias up every ``serve.reload_seconds``: a
promotion is served from the next request after it is seen, without a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from features.build import Definitions, build
from features.catalog import DIMENSIONS
from features.contract.schemas import MAX_TERM_MONTHS
from models.reasons import N_REASONS
from models.scorer import Scorer
from pipeline import registry
from pipeline.decisions import DecisionStore, clean
from pipeline.online import OnlineState, Refused, Request

log = logging.getLogger(__name__)
# state: the request's events validated and the entity's rows sliced; queue: waiting for the
# segment's worker (busy with an earlier build); then the build, the model, the log write.
PARTS = ("state", "queue", "features", "predict", "reasons", "log")
BASE_COLUMNS = {
    "entity_id",
    "as_of",
    "segment",
    "pd",
    "score",
    "band",
    "limit",
    "binding_constraint",
}


class DecisionRequest(BaseModel):
    """``POST /decisions``: who applies, for what, and the events since the last batch."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str = Field(min_length=1, max_length=128)
    segment: str = Field(min_length=1)
    amount: float = Field(gt=0, description="The principal asked for, in the log's currency.")
    term_months: int = Field(ge=1, le=MAX_TERM_MONTHS)
    events: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Events since the last batch, in the contract's transaction columns.",
    )


class ReviewRequest(BaseModel):
    """``POST /decisions/{id}/review``: a request for a person to look at a decision."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


@dataclass(frozen=True)
class Model:
    """One loaded model version."""

    name: str
    version: str
    scorer: Scorer


class Models:
    """The served model of each segment, loaded from the registry alias, reloaded on change."""

    def __init__(self, segments: Sequence[str], alias: str) -> None:
        self.alias = alias
        self.folder = Path(tempfile.mkdtemp(prefix="longtail-serve-"))
        self._current: dict[str, Model] = {}
        self._stop = threading.Event()
        for segment in segments:
            self.refresh(segment)

    def get(self, segment: str) -> Model:
        """The model serving ``segment`` now."""
        return self._current[segment]

    def refresh(self, segment: str) -> bool:
        """Load the version the alias points at if it is not the one served; True if loaded."""
        name = registry.model_name(segment)
        version = registry.version_by_alias(segment, self.alias)
        if version is None:
            raise ValueError(
                f"expected a registered {name}@{self.alias} to serve {segment}; found none "
                "(run `longtail register` and `longtail promote`)"
            )
        now = self._current.get(segment)
        if now is not None and now.version == str(version.version):
            return False
        dest = self.folder / name / str(version.version)
        scorer = registry.load_scorer(registry.version_uri(name, version.version), dest)
        _ = scorer.paths  # build the attribution table before the first request needs it
        self._current[segment] = Model(name, str(version.version), scorer)
        log.info("serving %s version %s (%s)", name, version.version, self.alias)
        return True

    def watch(self, seconds: float) -> None:
        """Look the alias up every ``seconds`` in a daemon thread (0: never)."""
        if seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(seconds):
                for segment in list(self._current):
                    try:
                        self.refresh(segment)
                    except Exception:  # a registry hiccup must not stop the service
                        log.exception("could not check %s@%s", segment, self.alias)

        threading.Thread(target=loop, name="model-reload", daemon=True).start()

    def close(self) -> None:
        """Stop watching and remove the downloaded models."""
        self._stop.set()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class _Job:
    request: Request
    loan: tuple[float, int]
    done: Future = field(default_factory=Future)


class DecisionService:
    """Decisions from the online state, the served models and the decision log."""

    def __init__(
        self,
        state: OnlineState,
        definitions: dict[str, Definitions],
        models: Models,
        store: DecisionStore,
        *,
        as_of: Callable[[], dt.date],
        max_batch: int = 32,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"expected max_batch >= 1; got {max_batch}")
        self.state, self.definitions, self.models, self.store = state, definitions, models, store
        self.as_of = as_of
        self.max_batch = max_batch
        self.timings: deque[dict[str, float]] = deque(maxlen=100_000)
        self.batches: deque[int] = deque(maxlen=100_000)  # requests per build
        self._queues: dict[str, queue.Queue[_Job]] = {}
        for segment in definitions:
            self._queues[segment] = queue.Queue()
            threading.Thread(
                target=self._work, args=(segment,), name=f"decide-{segment}", daemon=True
            ).start()

    def decide(self, body: DecisionRequest) -> dict[str, Any]:
        """One decision; :class:`Refused` (with its HTTP status) when it cannot be made."""
        self.state.check(body.segment, body.entity_id)  # consent first: nothing read before
        model = self.models.get(body.segment)
        cap = model.scorer.policy.product_cap
        if body.amount > cap:
            raise Refused(
                422,
                f"expected an amount at most the {body.segment} product cap {cap:,.0f}; "
                f"got {body.amount:,.2f}",
            )
        as_of = self.as_of()
        start = time.perf_counter()
        events = self.state.validate_events(body.segment, body.entity_id, as_of, body.events)
        job = _Job(Request(body.entity_id, as_of, events), (body.amount, body.term_months))
        queued = time.perf_counter()
        self._queues[body.segment].put(job)
        row, features, model, timing = job.done.result()
        timing["queue"] = time.perf_counter() - queued - sum(timing.values())
        timing["state"] += queued - start
        decision_id = uuid.uuid4().hex
        outputs = _outputs(row, body.amount)
        t = time.perf_counter()
        self.store.append(
            {
                "decision_id": decision_id,
                "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "segment": body.segment,
                "entity_id": body.entity_id,
                "as_of": as_of.isoformat(),
                "model_name": model.name,
                "model_version": model.version,
                "outcome": outputs["outcome"],
                "inputs": body.model_dump(),
                "features": features,
                "outputs": outputs,
            }
        )
        timing["log"] = time.perf_counter() - t
        self.timings.append(timing)
        log.info(
            "decision %s: %s %s %s by %s v%s",
            decision_id,
            body.segment,
            body.entity_id,
            outputs["outcome"],
            model.name,
            model.version,
        )
        return {
            "decision_id": decision_id,
            "segment": body.segment,
            "entity_id": body.entity_id,
            "as_of": as_of.isoformat(),
            **outputs,
            "model_name": model.name,
            "model_version": model.version,
        }

    def _work(self, segment: str) -> None:
        """Take every queued request (distinct entities, up to max_batch) into one build."""
        jobs = self._queues[segment]
        waiting: list[_Job] = []
        while True:
            batch = waiting or [jobs.get()]
            waiting = []
            seen = {batch[0].request.entity_id}
            while len(batch) < self.max_batch:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job.request.entity_id in seen:
                    waiting.append(job)  # the same entity twice: the next build
                else:
                    seen.add(job.request.entity_id)
                    batch.append(job)
            try:
                results = self._build(segment, batch)
            except Exception as exc:  # handed to each waiting request, never lost
                for job in batch:
                    job.done.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                job.done.set_result(result)

    def _build(self, segment: str, batch: list[_Job]) -> list[tuple]:
        """Features and scores for a batch of one segment's requests."""
        timing = dict.fromkeys(PARTS, 0.0)
        self.batches.append(len(batch))
        t0 = time.perf_counter()
        requests = [j.request for j in batch]
        inputs = self.state.inputs(segment, requests)
        spine = self.state.spine(requests, [j.loan for j in batch])
        t1 = time.perf_counter()
        frame = build(self.definitions[segment], spine, inputs)
        t2 = time.perf_counter()
        model = self.models.get(segment)
        rows, parts = _scored(model.scorer, frame)
        timing.update(state=t1 - t0, features=t2 - t1, predict=parts[0], reasons=parts[1])
        # what the model saw: every feature and policy input, and the loan asked for
        features = frame.drop("entity_id", "as_of").to_dicts()
        return [(r, f, model, dict(timing)) for r, f in zip(rows, features, strict=True)]

    def close(self) -> None:
        """Stop the model watcher, remove downloaded models, release the store."""
        self.models.close()
        self.store.close()

    def latency(self) -> dict[str, dict[str, float]]:
        """p50 and p99 (ms) of each part of the decisions made so far, and their count."""
        if not self.timings:
            return {}
        table = np.array([[t[p] for p in PARTS] for t in self.timings]) * 1000
        total = table.sum(axis=1)
        out = {p: _quantiles(table[:, i]) for i, p in enumerate(PARTS)}
        out["total"] = _quantiles(total)
        out["count"] = {"n": float(len(table))}
        if self.batches:
            out["batch_size"] = _quantiles(np.array(self.batches, dtype=float))
        return out


def _scored(scorer: Scorer, frame: pl.DataFrame) -> tuple[list[dict], tuple[float, float]]:
    """Scored rows (decision, price, reasons, sub-scores) and the seconds of the two parts.

    The decision without reasons is timed as ``predict``; the reasons are taken from a second
    call (which predicts again, a fraction of a millisecond) timed as ``reasons``.
    """
    t0 = time.perf_counter()
    decided = scorer.score(frame, reasons=False)
    t1 = time.perf_counter()
    explained = scorer.score(frame, reasons=True)
    t2 = time.perf_counter()
    extra = [c for c in explained.columns if c not in decided.columns]
    return decided.with_columns(explained.select(extra)).to_dicts(), (t1 - t0, t2 - t1)


def replay(record: dict[str, Any], scorer: Scorer) -> dict[str, Any]:
    """The outputs ``scorer`` (the record's model version) gives the record's stored features.

    Equal to the stored outputs when the decision is reproducible: the decision log holds every
    feature and policy input the model saw and the loan asked for.
    """
    frame = pl.DataFrame([record["features"]], infer_schema_length=None).with_columns(
        pl.lit(record["entity_id"]).alias("entity_id"),
        pl.lit(dt.date.fromisoformat(record["as_of"])).alias("as_of"),
    )
    rows, _ = _scored(scorer, frame)
    return _outputs(rows[0], record["inputs"]["amount"])


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def _outputs(row: dict[str, Any], amount: float) -> dict[str, Any]:
    """The decision's outputs from one scored row (price columns passed through as found).

    Approved when the limit covers the amount asked and no price column that is a flag (a
    boolean, e.g. the price engine's decline flag) is set.
    """
    price = {
        k: v
        for k, v in row.items()
        if k not in BASE_COLUMNS and not k.startswith(("reason_", "sub_"))
    }
    flags = [k for k, v in price.items() if isinstance(v, bool) and v]
    reason = None
    if row["limit"] <= 0:
        reason = row["binding_constraint"]
    elif amount > row["limit"]:
        reason = "amount_above_limit"
    elif flags:
        reason = flags[0]
    return clean(
        {
            "outcome": "declined" if reason else "approved",
            "decline_reason": reason,
            "pd": row["pd"],
            "score": row["score"],
            "band": row["band"],
            "limit": row["limit"],
            "binding_constraint": row["binding_constraint"],
            "price": price,
            "reasons": [
                row[f"reason_{i + 1}"] for i in range(N_REASONS) if row.get(f"reason_{i + 1}")
            ],
            "sub_scores": {d: row[f"sub_{d}"] for d in DIMENSIONS if f"sub_{d}" in row},
        }
    )


def service(settings: Any, *, as_of: dt.date | None = None) -> DecisionService:
    """A service from params (``serve``, ``features``, ``label``, ``mlflow``), ready to decide.

    ``as_of`` (else params ``serve.as_of``) freezes the decision date, e.g. for a synthetic
    world whose log ended in the past; otherwise a decision is made as of tomorrow's date
    (UTC), so every event up to the request counts (features read events before ``as_of``).
    """
    from pipeline.inputs import feature_definitions, present_segments
    from pipeline.storage import Layout

    params = settings.serve
    fixed = as_of or params.as_of
    present = present_segments(Layout(settings.data_dir))
    segments = [s for s in params.segments if s in present]
    if not segments:
        raise ValueError(
            f"expected validated data of a segment in {list(params.segments)} under "
            f"{settings.data_dir}; found {list(present)} (run `longtail validate`)"
        )
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    models = Models(segments, params.alias)
    state = OnlineState.load(settings.data_dir, segments)
    definitions = {
        s: feature_definitions(s, settings.features, settings.label, settings.limits)
        for s in segments
    }
    store = DecisionStore(decision_store(settings))
    models.watch(params.reload_seconds)

    def today() -> dt.date:
        return fixed or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)

    return DecisionService(
        state, definitions, models, store, as_of=today, max_batch=params.max_batch
    )


def decision_store(settings: Any) -> str:
    """The decision log's URL under these settings (params ``serve.decision_store``)."""
    from pipeline.decisions import store_url

    return store_url(settings.serve.decision_store, settings.data_dir)


def create_app(decisions: DecisionService) -> Any:
    """The HTTP face of a :class:`DecisionService` (FastAPI); every error is a clear 4xx."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title="longtail decisions", version="1")

    @app.exception_handler(Refused)
    def refused(_: object, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def malformed(_: object, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse(
            {"detail": "expected a valid request body; got " + "; ".join(problems)},
            status_code=422,
        )

    @app.exception_handler(Exception)
    def failed(_: object, exc: Exception) -> JSONResponse:
        log.error("decision failed: %s", type(exc).__name__)
        return JSONResponse(
            {
                "detail": f"the decision could not be made ({type(exc).__name__}); nothing was "
                "recorded"
            },
            status_code=500,
        )

    @app.post("/decisions")
    def decide(body: DecisionRequest) -> dict[str, Any]:
        return decisions.decide(body)

    @app.get("/decisions/{decision_id}")
    def explain(decision_id: str) -> dict[str, Any]:
        record = decisions.store.get(decision_id)
        if record is None:
            raise Refused(404, f"expected a known decision id; got {decision_id!r}")
        return clean(record)

    @app.post("/decisions/{decision_id}/review")
    def review(decision_id: str, body: ReviewRequest | None = None) -> dict[str, Any]:
        try:
            return decisions.store.request_review(decision_id, body.note if body else None)
        except KeyError:
            raise Refused(404, f"expected a known decision id; got {decision_id!r}") from None

    @app.get("/latency")
    def latency(reset: bool = False) -> dict[str, Any]:
        measured = decisions.latency()
        if reset:
            decisions.timings.clear()
            decisions.batches.clear()
        return measured

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            s: {"model": m.name, "version": m.version}
            for s in decisions.definitions
            for m in [decisions.models.get(s)]
        }

    return app
