"""`recqa validate recs|qa`: read a build's inputs as the build would, without running it.

Takes the same flags as `build-recs` / `build-qa` (any other is refused; Beam's set the file
systems the inputs are read through, as in the build), parses every
row with the build's own readers and parsers, and fails as the build would: an input that
matches no file or only empty ones, or more than `--max-reject-fraction` of an input's rows
rejected, with the file, line and reason of example rows. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from features.errors import InputError
from pipelines import build_qa, build_recs
from pipelines.transforms.quality import check_reject_fraction
from pipelines.transforms.read import InputSpec, read_input, use_beam_options

# validate <kind> -> the job whose inputs it checks
JOBS = {"recs": build_recs, "qa": build_qa}
EXAMPLES = 3  # rejected rows shown per input


@dataclass(frozen=True)
class InputCounts:
    """Rows of one input that parse, and those the build would reject (a few as examples)."""

    kind: str
    path: str
    valid: int
    rejected: int
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationResult:
    """The counts of every input checked."""

    inputs: list[InputCounts]

    def summary(self) -> str:
        """A line per input, and under it up to `EXAMPLES` rejected rows (file, line, reason) even within the limit."""
        lines = []
        for c in self.inputs:
            lines.append(f"  {c.kind:<12} valid {c.valid:>8}  rejected {c.rejected:>6}  {c.path}")
            lines.extend(f"      e.g. {r['file']}:{r['line']}: {r['reason']}" for r in c.sample[:EXAMPLES])
        return "\n".join(lines)


def count_input(spec: InputSpec) -> InputCounts:
    """Parse every row of the input's files with the build's reader; count valid and rejected rows."""
    read = read_input(spec, keep_records=False)
    return InputCounts(spec.kind, spec.path, read.valid, read.rejected, read.sample)


def run(argv: Sequence[str] | None = None) -> ValidationResult:
    """Check the inputs of `build-<kind>`; raises InputError as the build would fail."""
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: recqa validate {{{','.join(JOBS)}}} [the build's input flags]\n\n{__doc__}")
        raise SystemExit(0 if argv else 2)
    if argv[0] not in JOBS:
        raise InputError(f"expected one of {sorted(JOBS)} first, got {argv[:1]}", field="kind")
    job = JOBS[argv[0]]
    args, beam_args = job.parse_args(argv[1:], prog=f"recqa validate {argv[0]}")
    use_beam_options(beam_args)
    counts = [count_input(spec) for spec in job.input_specs(args)]
    for c in counts:
        check_reject_fraction(c.valid, c.rejected, c.sample, c.kind, args.max_reject_fraction,
                              "(not written: validate writes nothing; a build writes them under <warehouse>/_rejects/)")
    return ValidationResult(counts)
