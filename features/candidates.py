"""Candidates: what one build wrote, how it was configured, and how its evaluation judged it.

A candidate is the unit that moves from build to evaluate to publish. A build records the
table versions it wrote with the configuration it used and its inputs; an evaluation of that
candidate adds its verdict; publish releases only a candidate whose verdict passed. So the
versions a gate judged are exactly the versions a release names, never "the latest" re-read.

Stored as an append-only Lance table (`candidates`), one row per event ("built" or
"evaluated"): appends never conflict, so two builds running side by side both land, and no
event is ever rewritten. The writer is pipelines/lance_io.py; the reader is registry/log.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from features.errors import InputError

CANDIDATES_TABLE = "candidates"
RECS, QA = "recs", "qa"
KINDS = (RECS, QA)
BUILT, EVALUATED = "built", "evaluated"
LATEST = "latest"
CANDIDATES_SCHEMA = pa.schema(
    [
        pa.field("candidate", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # recs | qa
        pa.field("event", pa.string(), nullable=False),  # built | evaluated
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record", pa.string(), nullable=False),  # JSON: the event's content
    ]
)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's verdict on a candidate: passed or not, each gate, and the report's hash."""

    passed: bool
    gates: list[dict[str, Any]]  # {"name", "threshold", "figure", "passed"}
    report_sha256: str
    report: str  # where report.json was written
    headline: dict[str, float] = field(default_factory=dict)  # e.g. {"ndcg": 0.31}
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # what was published for the candidate's tables when it was judged ({} = nothing): a verdict
    # against another release no longer says the candidate is no worse than what is served
    against: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One build's output, as recorded when it committed, with every evaluation made of it since."""

    id: str
    kind: str
    tables: dict[str, int]  # table -> version the build committed (indexes included)
    rows: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # what the build used: ALS, weights, index, encoder, chunking
    inputs: dict[str, Any] = field(default_factory=dict)  # {"argv": [...], "files": {kind: {"path", "sha256", "files"}}}
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    evaluations: tuple[Evaluation, ...] = ()

    @property
    def evaluation(self) -> Evaluation | None:
        """The newest evaluation: the one publish trusts."""
        return self.evaluations[-1] if self.evaluations else None


def new_candidate_id(kind: str, now: datetime | None = None) -> str:
    """`recs-20261130T101500-3fa9c1`: the kind, when, and a random suffix so two builds never clash."""
    if kind not in KINDS:
        raise ValueError(f"unknown candidate kind {kind!r}; expected one of {KINDS}")
    now = now or datetime.now(timezone.utc)
    return f"{kind}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def built_row(candidate: Candidate) -> dict[str, Any]:
    """The `built` event of a candidate, as a row of CANDIDATES_SCHEMA."""
    record = {"tables": candidate.tables, "rows": candidate.rows, "config": candidate.config, "inputs": candidate.inputs}
    return {"candidate": candidate.id, "kind": candidate.kind, "event": BUILT, "created_at": candidate.created_at,
            "record": json.dumps(record, sort_keys=True, default=str)}


def evaluated_row(candidate: Candidate, evaluation: Evaluation) -> dict[str, Any]:
    """An `evaluated` event of a candidate, as a row of CANDIDATES_SCHEMA."""
    record = {"passed": evaluation.passed, "gates": evaluation.gates, "report_sha256": evaluation.report_sha256,
              "report": evaluation.report, "headline": evaluation.headline, "against": evaluation.against}
    return {"candidate": candidate.id, "kind": candidate.kind, "event": EVALUATED, "created_at": evaluation.created_at,
            "record": json.dumps(record, sort_keys=True, default=str)}


def rows_to_arrow(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=CANDIDATES_SCHEMA)


def candidates_from_arrow(table: pa.Table) -> list[Candidate]:
    """The candidates the events describe, oldest first, each with its evaluations in order.

    An evaluation whose candidate has no `built` event (a hand-edited table) is ignored.
    """
    rows = sorted(table.to_pylist(), key=lambda r: r["created_at"])
    built: dict[str, Candidate] = {}
    evaluations: dict[str, list[Evaluation]] = {}
    for row in rows:
        record = json.loads(row["record"])
        if row["event"] == BUILT:
            built[row["candidate"]] = Candidate(
                id=row["candidate"], kind=row["kind"], tables={k: int(v) for k, v in record["tables"].items()},
                rows={k: int(v) for k, v in record.get("rows", {}).items()}, config=record.get("config", {}),
                inputs=record.get("inputs", {}), created_at=row["created_at"],
            )
        elif row["event"] == EVALUATED:
            evaluations.setdefault(row["candidate"], []).append(Evaluation(
                passed=bool(record["passed"]), gates=list(record.get("gates", [])), report_sha256=record.get("report_sha256", ""),
                report=record.get("report", ""), headline=dict(record.get("headline", {})), created_at=row["created_at"],
                against={k: int(v) for k, v in record.get("against", {}).items()},
            ))
    return [
        Candidate(**{**c.__dict__, "evaluations": tuple(evaluations.get(c.id, ()))})
        for c in built.values()
    ]


def resolve_candidate(candidates: Sequence[Candidate], ref: str, kind: str | None = None, flag: str = "--candidate") -> Candidate:
    """The candidate `ref` names: its id, or `latest` (the newest of `kind`); an InputError otherwise."""
    pool = [c for c in candidates if kind is None or c.kind == kind]
    if ref == LATEST:
        if not pool:
            raise InputError(f"no {kind + ' ' if kind else ''}candidate has been built yet: run build-{kind or 'recs'} first", field=flag)
        return pool[-1]
    for candidate in candidates:
        if candidate.id == ref:
            if kind is not None and candidate.kind != kind:
                raise InputError(f"candidate '{ref}' is a {candidate.kind} candidate, not {kind}", field=flag)
            return candidate
    known = ", ".join(c.id for c in pool[-5:]) or "none"
    raise InputError(f"no candidate '{ref}' (newest: {known}; `recqa candidates` lists them)", field=flag)
