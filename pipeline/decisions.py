"""The decision log: every online decision, kept for replay, explanation and human review.

Each decision is one row of an embedded SQL store (SQLite by default, any SQLAlchemy URL from
params.yaml ``serve.decision_store``): its inputs (the loan asked for and the events sent with
it), the model name and version, every feature the model saw and every output. A decision can
thus be explained by id (``GET /decisions/{id}``, ``longtail explain ID``) and replayed: the
stored features scored again by the stored model version give the same outputs
(:func:`replay`). A person refused by the machine may ask for a human to look
(``POST /decisions/{id}/review``, PIPL art. 24); ``longtail review`` lists the open requests.

The store holds what the decision used, amounts included; the application log (``logging``)
carries ids and codes only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

METADATA = sa.MetaData()
DECISIONS = sa.Table(
    "decisions",
    METADATA,
    sa.Column("decision_id", sa.String(32), primary_key=True),
    sa.Column("decided_at", sa.String(32), nullable=False),
    sa.Column("segment", sa.String(16), nullable=False),
    sa.Column("entity_id", sa.String(128), nullable=False, index=True),
    sa.Column("as_of", sa.String(10), nullable=False),
    sa.Column("model_name", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
)
REVIEWS = sa.Table(
    "reviews",
    METADATA,
    sa.Column("review_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.String(32), sa.ForeignKey("decisions.decision_id"), nullable=False),
    sa.Column("requested_at", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, default="open"),
)


def store_url(configured: str | None, data_dir: Path) -> str:
    """The store's SQLAlchemy URL: params ``serve.decision_store``, else beside the data."""
    return configured or f"sqlite:///{data_dir / 'decisions.db'}"


def clean(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities become null, dates ISO strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


class DecisionStore:
    """Append decisions and review requests to the store; read them back by id."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        METADATA.create_all(self.engine)
        self._write = threading.Lock()  # one writer at a time (SQLite's own rule, made explicit)

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one decision (the keys of :data:`DECISIONS`; JSON parts as mappings)."""
        row = {
            **record,
            **{k: json.dumps(clean(record[k])) for k in ("inputs", "features", "outputs")},
        }
        with self._write, self.engine.begin() as conn:
            conn.execute(DECISIONS.insert(), row)

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """One decision with its review requests, or None when the id is unknown."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(DECISIONS).where(DECISIONS.c.decision_id == decision_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            reviews = (
                conn.execute(
                    sa.select(REVIEWS)
                    .where(REVIEWS.c.decision_id == decision_id)
                    .order_by(REVIEWS.c.review_id)
                )
                .mappings()
                .all()
            )
        out = dict(row)
        for key in ("inputs", "features", "outputs"):
            out[key] = json.loads(out[key])
        out["reviews"] = [dict(r) for r in reviews]
        return out

    def request_review(self, decision_id: str, note: str | None) -> dict[str, Any]:
        """Record a request for human review of a decision; KeyError when the id is unknown."""
        with self._write, self.engine.begin() as conn:
            known = conn.execute(
                sa.select(DECISIONS.c.decision_id).where(DECISIONS.c.decision_id == decision_id)
            ).first()
            if known is None:
                raise KeyError(decision_id)
            when = _now()
            result = conn.execute(
                REVIEWS.insert(),
                {"decision_id": decision_id, "requested_at": when, "note": note, "status": "open"},
            )
            review_id = result.inserted_primary_key[0]
        return {
            "review_id": review_id,
            "decision_id": decision_id,
            "requested_at": when,
            "status": "open",
        }

    def open_reviews(self) -> list[dict[str, Any]]:
        """The review requests still open, oldest first, with their decision's outline."""
        query = (
            sa.select(
                REVIEWS.c.review_id,
                REVIEWS.c.decision_id,
                REVIEWS.c.requested_at,
                DECISIONS.c.segment,
                DECISIONS.c.entity_id,
                DECISIONS.c.outcome,
                DECISIONS.c.model_version,
            )
            .join(DECISIONS, DECISIONS.c.decision_id == REVIEWS.c.decision_id)
            .where(REVIEWS.c.status == "open")
            .order_by(REVIEWS.c.review_id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count(self) -> int:
        """How many decisions the store holds."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar())


def _sqlite_pragmas(conn: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer; NORMAL sync: durable at each checkpoint."""
    cursor = conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def explanation(record: Mapping[str, Any]) -> list[str]:
    """A stored decision in plain lines: outcome, score, limit, reasons, sub-scores, model."""
    out = record["outputs"]
    inputs = record["inputs"]
    lines = [
        f"decision {record['decision_id']} ({record['decided_at']}): {record['outcome']}"
        + (f" ({out['decline_reason']})" if out.get("decline_reason") else ""),
        f"{record['segment']} {record['entity_id']} as of {record['as_of']}; asked "
        f"{inputs['amount']:,.2f} over {inputs['term_months']} months",
        f"PD {out['pd']:.4f}, score {out['score']} ({out['band']}), limit {out['limit']:,.0f} "
        f"set by {out['binding_constraint']}",
    ]
    if out.get("price"):
        lines.append("price: " + ", ".join(f"{k} {v}" for k, v in out["price"].items()))
    reasons = out.get("reasons") or []
    lines.append(
        "reasons: " + ("; ".join(reasons) if reasons else "none (nothing counted against)")
    )
    subs = out.get("sub_scores") or {}
    lines.append("sub-scores: " + ", ".join(f"{k} {v:+.1f}" for k, v in subs.items()))
    lines.append(f"model {record['model_name']} version {record['model_version']}")
    for review in record.get("reviews", []):
        lines.append(
            f"review {review['review_id']} requested {review['requested_at']}: {review['status']}"
        )
    return lines
