"""Reject accounting: write the rejects, and fail the run when too many rows were bad."""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from features.errors import InputError

DEFAULT_MAX_REJECT_FRACTION = 0.01
_SAMPLE_REASONS = 3


def write_rejects(lines: list[str], path: str) -> list[str]:
    """Write the rejects as JSON lines; no file when there are none.

    Written in one piece rather than with WriteToText: Beam's S3 writer fails on an empty
    file (a multipart upload with no parts), and rejects are meant to be few.
    """
    if not lines:
        return []
    with FileSystems.create(path) as handle:
        handle.write(("\n".join(sorted(lines)) + "\n").encode("utf-8"))
    return [path]


def check_reject_fraction(
    valid: int,
    rejected: int,
    sample: list[dict[str, Any]],
    kind: str,
    max_fraction: float,
    rejects_path: str,
    written: list[str] = (),
) -> bool:
    """True when the rejected fraction is within the limit; otherwise a clear InputError."""
    total = valid + rejected
    reasons = "; ".join(f"{r['file']}:{r['line']}: {r['reason']}" for r in sample)
    if valid == 0:
        examples = f"; for example: {reasons}" if reasons else ""
        raise InputError(f"no valid {kind} rows were read ({rejected} rejected; see {rejects_path}){examples}", field=kind)
    if rejected / total > max_fraction:
        raise InputError(
            f"{rejected} of {total} {kind} rows rejected ({rejected / total:.2%}), above the limit of "
            f"{max_fraction:.2%}; rejects in {rejects_path}; for example: {reasons}",
            field=kind,
        )
    return True


class CheckRejects(beam.PTransform):
    """(records, rejects) -> a singleton True that write steps wait on, or a failed run.

    Rejects are written as JSON lines to `<rejects_dir>/<kind>.jsonl` either way.
    """

    def __init__(self, kind: str, max_fraction: float, rejects_dir: str) -> None:
        super().__init__()
        self._kind = kind
        self._max_fraction = max_fraction
        self._path = f"{rejects_dir.rstrip('/')}/{kind}.jsonl"

    def expand(self, outputs: dict[str, beam.PCollection]) -> beam.PCollection:
        records, rejects = outputs["records"], outputs["rejects"]
        # The check waits on the written file, so the rejects are on disk even when it fails the run.
        written = (
            rejects
            | "RejectJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, default=str))
            | "GatherRejects" >> beam.combiners.ToList()
            | "WriteRejects" >> beam.FlatMap(write_rejects, self._path)
        )
        rejected = rejects | "CountRejected" >> beam.combiners.Count.Globally()
        sample = rejects | "SampleRejects" >> beam.combiners.Sample.FixedSizeGlobally(_SAMPLE_REASONS)
        return (
            records
            | "CountValid" >> beam.combiners.Count.Globally()
            | "CheckFraction"
            >> beam.Map(
                check_reject_fraction,
                beam.pvalue.AsSingleton(rejected),
                beam.pvalue.AsSingleton(sample),
                self._kind,
                self._max_fraction,
                self._path,
                beam.pvalue.AsList(written),
            )
        )
