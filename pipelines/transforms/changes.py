"""Apply the change log's snapshot to an input's parsed records: the build's view of the data.

The input files still hold rows that were replaced or deleted since they were written, and
lack what was upserted or logged since. A build applies the log at one version (its
snapshot) where the parsed records enter the pipeline, after the reject check, so the input
stages keep counting exactly the files' rows and rejects; the rows the log replaced or
dropped (`replaced`) and the ones it added (`logged`) are counted beside them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import apache_beam as beam

from features.changes import ChangeSet, fold
from registry.log import ChangeLog

REPLACED, LOGGED = "replaced", "logged"  # counters of an input stage: file rows the log dropped, rows it added


def _rules(kind: str, changes: ChangeSet) -> tuple[Callable[[Any], bool], list[Any]]:
    """Which file records of an input stay, and the logged records it gains."""
    if kind == "items":
        return changes.keeps_item, changes.upserted_items()
    if kind == "documents":
        return changes.keeps_answer, changes.upserted_answers()
    if kind == "interactions":
        return changes.keeps_event, list(changes.events)
    raise ValueError(f"no changes apply to input kind '{kind}'")


def apply_to_records(kind: str, records: Sequence[Any], changes: ChangeSet) -> list[Any]:
    """The records of an input read in one process, with the snapshot applied as a build applies it."""
    if not changes:
        return list(records)
    keeps, logged = _rules(kind, changes)
    return [record for record in records if keeps(record)] + logged


class _KeepDoFn(beam.DoFn):
    def __init__(self, kind: str, changes: ChangeSet) -> None:
        self._kind = kind
        self._changes = changes

    def setup(self) -> None:
        self._keeps, _ = _rules(self._kind, self._changes)
        self._replaced = beam.metrics.Metrics.counter(self._kind, REPLACED)

    def process(self, record: Any) -> Iterator[Any]:
        if self._keeps(record):
            yield record
        else:
            self._replaced.inc()


class _CountLoggedDoFn(beam.DoFn):
    def __init__(self, kind: str) -> None:
        self._kind = kind

    def setup(self) -> None:
        self._logged = beam.metrics.Metrics.counter(self._kind, LOGGED)

    def process(self, record: Any) -> Iterator[Any]:
        self._logged.inc()
        yield record


class ApplyChanges(beam.PTransform):
    """An input's records -> those the log left as they are, plus its upserted or logged ones."""

    def __init__(self, kind: str, changes: ChangeSet) -> None:
        super().__init__()
        _rules(kind, changes)  # refuse an unknown kind when the pipeline is built
        self._kind = kind
        self._changes = changes

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        kept = records | "KeepUnchanged" >> beam.ParDo(_KeepDoFn(self._kind, self._changes))
        _, logged = _rules(self._kind, self._changes)
        if not logged:
            return kept
        added = (
            records.pipeline
            | "Logged" >> beam.Create(logged, reshuffle=False)
            | "CountLogged" >> beam.ParDo(_CountLoggedDoFn(self._kind))
        )
        return (kept, added) | "WithLogged" >> beam.Flatten()


def apply_changes(records: beam.PCollection, kind: str, changes: ChangeSet, label: str) -> beam.PCollection:
    """`records` with the snapshot applied; the very same PCollection when the snapshot changes nothing,
    so a build over a warehouse with no log runs exactly the pipeline it ran before the log existed."""
    return records | label >> ApplyChanges(kind, changes) if changes else records


def snapshot_input(log: ChangeLog) -> dict[str, dict[str, Any]]:
    """The snapshot as one more input of a candidate (or an evaluation's dataset): its version, how
    many changes it holds and a sha256 of them, beside the files' own; nothing with no log, so such
    a build records exactly the inputs it recorded before the log existed."""
    if not log.version:
        return {}
    digest = hashlib.sha256()
    for change in log.changes:
        digest.update(json.dumps(asdict(change), sort_keys=True).encode() + b"\n")
    return {"changes": {"version": log.version, "rows": len(log.changes), "sha256": digest.hexdigest()}}


def folded(log: ChangeLog) -> ChangeSet:
    """The ChangeSet of a snapshot."""
    return fold(log.changes)
