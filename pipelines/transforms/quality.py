"""Reject accounting: write the rejects, and fail the run when too many rows were bad."""

from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from features.errors import InputError
from pipelines.summary import REJECTS_FILE

DEFAULT_MAX_REJECT_FRACTION = 0.01
_SAMPLE_REASONS = 3


def write_rejects(lines: list[str], path: str, kind: str | None = None) -> list[str]:
    """Write the rejects as JSON lines; no file when there are none.

    Written in one piece rather than with WriteToText: Beam's S3 writer fails on an empty
    file (a multipart upload with no parts), and rejects are meant to be few. The path is
    kept in a metric of the input `kind`, for the run's summary to say where they went.
    """
    if not lines:
        return []
    with FileSystems.create(path) as handle:
        handle.write(("\n".join(sorted(lines)) + "\n").encode("utf-8"))
    if kind is not None:
        beam.metrics.Metrics.string_set(kind, REJECTS_FILE).add(path)
    return [path]


# a reject reason's words -> the flag that may fix such rows
HINTS = (
    ("field 'timestamp'", "if the timestamps are in another format, name it with --timestamp-format "
                          "(epoch_s, epoch_ms, iso or a strftime pattern such as '%d.%m.%Y %H:%M')"),
    ("unknown event", "give such events a weight with --event-weight EVENT=WEIGHT"),
    ("exceeds the limit of", "allow longer texts with --max-text-chars"),
)


def reject_hints(sample: list[dict[str, Any]]) -> list[str]:
    """What to try, for the kinds of reject among the examples shown."""
    return [hint for words, hint in HINTS if any(words in str(r.get("reason", "")) for r in sample)]


def check_reject_fraction(
    valid: int,
    rejected: int,
    sample: list[dict[str, Any]],
    kind: str,
    max_fraction: float,
    rejects_path: str,
    written: list[str] = (),
) -> bool:
    """True when the rejected fraction is within the limit; otherwise a clear InputError with what to try."""
    total = valid + rejected
    reasons = "; ".join(f"{r['file']}:{r['line']}: {r['reason']}" for r in sample)
    hints = reject_hints(sample)
    if valid == 0:
        examples = f"; for example: {reasons}" if reasons else ""
        tries = "".join(f"\n  hint: {hint}" for hint in hints)
        raise InputError(f"no valid {kind} rows were read ({rejected} rejected; see {rejects_path}){examples}{tries}", field=kind)
    if rejected / total > max_fraction:
        tries = "".join(f"\n  hint: {hint}" for hint in [*hints, f"to accept more rejected rows, raise --max-reject-fraction (now {max_fraction:g})"])
        raise InputError(
            f"{rejected} of {total} {kind} rows rejected ({rejected / total:.2%}), above the limit of "
            f"{max_fraction:.2%}; rejects in {rejects_path}; for example: {reasons}{tries}",
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
            | "WriteRejects" >> beam.FlatMap(write_rejects, self._path, self._kind)
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
