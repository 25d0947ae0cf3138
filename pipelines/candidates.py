"""A build's candidate: find the versions it committed and record them with its configuration.

Every table version a build commits carries the candidate id in its schema metadata
(`recqa.candidate`), so the driver finds exactly its own versions after the run, indexes
included, even if another build of another table committed meanwhile; nothing is taken to be
"the latest".
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from features.candidates import Candidate, built_row
from features.schemas import META_CANDIDATE
from pipelines import lance_io
from pipelines.summary import StageRow

# Flags that say where things go, not what is built: not part of a candidate's configuration.
_NOT_CONFIG = ("warehouse", "rejects", "config", "tuned")


def candidate_versions(warehouse: str, names: Sequence[str], candidate_id: str) -> dict[str, int]:
    """The newest version of each table that the candidate's build wrote (its indexes included)."""
    found = {}
    for name in names:
        latest = lance_io.dataset(warehouse, name)
        if latest is None:
            raise RuntimeError(f"{name}: the build of candidate {candidate_id} left no table")
        for version in sorted((v["version"] for v in latest.versions()), reverse=True):
            ds = lance_io.dataset(warehouse, name, version)
            if ds is not None and (ds.schema.metadata or {}).get(META_CANDIDATE) == candidate_id.encode():
                found[name] = int(version)
                break
        else:
            raise RuntimeError(f"{name}: no version carries candidate {candidate_id}; was it committed?")
    return found


def _absolute(value: Any) -> Any:
    """A local input path made absolute, so the candidate can be re-read from another folder."""
    if isinstance(value, str) and value and "://" not in value:
        return os.path.abspath(value)
    return value


def build_flags(args: argparse.Namespace, input_flags: Sequence[str]) -> dict[str, Any]:
    """The job's parsed flags as the candidate keeps them: local input paths absolute, sinks left out."""
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    for name in input_flags:
        flags[name] = _absolute(flags[name])
    return flags


def input_rows(stages: Sequence[StageRow], kinds: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows read and rejected per input, from the run's stage counters."""
    rows = {}
    for stage in stages:
        if stage.stage in kinds:
            read, rejected = stage.counts.get("read", 0), stage.counts.get("rejected", 0)
            rows[stage.stage] = {"rows": read - rejected, "rejected": rejected}
    return rows


def record_build(
    warehouse: str,
    candidate_id: str,
    kind: str,
    names: Sequence[str],
    config: Mapping[str, Any],
    inputs: Mapping[str, Mapping[str, Any]],
) -> Candidate:
    """Append the `built` event of a finished build: its versions, row counts, configuration, inputs."""
    tables = candidate_versions(warehouse, names, candidate_id)
    datasets = {name: lance_io.dataset(warehouse, name, version) for name, version in tables.items()}
    rows = {name: int(ds.count_rows()) for name, ds in datasets.items()}
    built = {name: [{"name": i["name"], "type": i["type"], "fields": list(i["fields"])} for i in ds.list_indices()] for name, ds in datasets.items()}
    config = {**config, "indexes_built": built}  # what the build's index settings produced at this size
    candidate = Candidate(id=candidate_id, kind=kind, tables=tables, rows=rows, config=dict(config), inputs=dict(inputs))
    lance_io.append_candidate_events(warehouse, [built_row(candidate)])
    return candidate
