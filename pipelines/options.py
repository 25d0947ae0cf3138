"""Command-line handling shared by the batch jobs: job flags first, the rest to Beam."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import time
from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import PipelineOptions

from features.adapters import DEFAULT_MAX_TEXT_CHARS
from features.locations import add_warehouse_argument
from features.schemas import ALS_INDEX
from pipelines.transforms.quality import DEFAULT_MAX_REJECT_FRACTION

# Beam's default runner tries Prism first, which downloads a binary; name a local one.
DEFAULT_RUNNER = "FnApiRunner"


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the flags every job has; unknown flags are left for Beam."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Any other flag (--runner, --project, --flink_master, ...) passes to Apache Beam unchanged.",
    )
    add_warehouse_argument(parser)
    parser.add_argument(
        "--max-reject-fraction",
        type=float,
        default=DEFAULT_MAX_REJECT_FRACTION,
        help="fail the run when more than this fraction of an input's rows is rejected (default 0.01)",
    )
    parser.add_argument("--rejects", default=None, help="folder for rejected rows (default <warehouse>/_rejects/<job>-<time>)")
    parser.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS, help="longer texts are rejected")
    parser.add_argument(
        "--ann-min-rows",
        type=int,
        default=ALS_INDEX.min_rows_for_ann,
        help="build IVF-PQ indexes on tables with at least this many rows; smaller ones are searched exactly",
    )
    return parser


def rejects_dir(args: argparse.Namespace, job: str) -> str:
    """Where this run's rejects go: the flag, or a fresh folder under the warehouse."""
    return args.rejects or f"{args.warehouse.rstrip('/')}/_rejects/{job}-{time.strftime('%Y%m%dT%H%M%S')}"


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the flags the job did not consume, on a local runner by default."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
    return PipelineOptions(args)


def unknown_flags(beam_args: Sequence[str]) -> list[str]:
    """The flags among `beam_args` that no Beam options class knows either.

    For commands that take a job's flags but run no pipeline (`recqa tune`): a typo there
    would otherwise pass silently as a Beam flag.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():  # as PipelineOptions.get_all_options does
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(beam_args))
    return list(unknown)


@dataclass(frozen=True)
class JobResult:
    """What a job wrote: the new version and row count of each table."""

    versions: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    stages: str = ""  # the per-stage summary table

    @classmethod
    def of(cls, warehouse: str, names: Sequence[str], result=None) -> "JobResult":
        """The latest version and row count of each named table, and the run's stage table."""
        from pipelines import lance_io
        from pipelines.summary import format_table, stage_rows

        return cls(
            versions=lance_io.table_versions(warehouse, names),
            rows=lance_io.table_rows(warehouse, names),
            stages=format_table(stage_rows(result)) if result is not None else "",
        )

    def summary(self) -> str:
        tables = "\n".join(
            f"  {name:<8} version {self.versions[name]:>4}" + (f"  rows {self.rows[name]:>8}" if name in self.rows else "")
            for name in self.versions
        )
        return f"{self.stages}\n\n{tables}" if self.stages else tables
