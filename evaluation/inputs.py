"""The inputs of an evaluation or a tuning run, read exactly as the build reads them.

The build's own flags (`--input-format`, `--map`, `--timestamp-format`, `--event-weight`,
local or `s3://`) and readers, the same reject threshold: an id such as `0003000098E85347`
or `00123` stays the string it is, and a bad row is named with its file and line.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping
from typing import Any

from evaluation.recs import Dataset
from features.errors import InputError
from pipelines import build_recs
from pipelines.transforms.quality import check_reject_fraction
from pipelines.transforms.changes import apply_to_records, folded, snapshot_input
from pipelines.transforms.read import files_sha256, read_input
from registry.log import ChangeLog, read_changes


def changes_at(warehouse: str, version: int | None) -> ChangeLog:
    """The change log snapshot an evaluation applies: a candidate's own `version` (0: it applied
    none), or the latest (None), as a build started now would."""
    if version == 0:
        return ChangeLog((), 0)
    try:
        return read_changes(warehouse, version=version)
    except (ValueError, OSError) as error:
        raise InputError(f"change log version {version} of '{warehouse}' is gone ({error}); `recqa purge` removes older "
                         "versions: evaluate a candidate built since", field="--candidate") from error


def read_recs(args: argparse.Namespace, changes: ChangeLog | None = None) -> Dataset:
    """Interactions and items as build-recs reads them (exact duplicate events dropped as it drops them).

    `args` are build-recs' parsed flags; `changes` the change log snapshot to apply over the
    files, as the build applied it (none by default). Raises InputError when an input matches
    nothing or more than `--max-reject-fraction` of its rows are rejected, with example rows.
    """
    interactions_spec, items_spec = build_recs.input_specs(args)
    reads = {}
    for spec in (interactions_spec, items_spec):
        read = read_input(spec)
        check_reject_fraction(read.valid, read.rejected, read.sample, spec.kind, args.max_reject_fraction,
                              "(not written: evaluation keeps no rejects; `recqa validate recs` lists them)")
        reads[spec.kind] = read
    log = changes or ChangeLog((), 0)
    applied = folded(log)
    events = list(dict.fromkeys(apply_to_records("interactions", reads["interactions"].records, applied)))
    return Dataset(
        events=events,
        items=apply_to_records("items", reads["items"].records, applied),
        files=tuple([*reads["interactions"].files, *reads["items"].files]),
        inputs={**{spec.kind: {**files_sha256(spec.path), "rows": reads[spec.kind].valid, "rejected": reads[spec.kind].rejected}
                   for spec in (interactions_spec, items_spec)}, **snapshot_input(log)},
    )


def combined_hash(inputs: Mapping[str, Mapping[str, Any]]) -> str:
    """One sha256 for a dataset of several inputs: over each input's kind and content hash."""
    digest = hashlib.sha256()
    for kind in sorted(inputs):
        digest.update(f"{kind}:{inputs[kind]['sha256']}\n".encode())
    return digest.hexdigest()
