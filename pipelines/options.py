"""Command-line handling shared by the batch jobs: job flags first, the rest to Beam."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import PipelineOptions

from features.schemas import DEFAULT_WAREHOUSE

# Beam's default runner tries Prism first, which downloads a binary; name a local one.
DEFAULT_RUNNER = "FnApiRunner"


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the flags every job has; unknown flags are left for Beam."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Any other flag (--runner, --project, --flink_master, ...) passes to Apache Beam unchanged.",
    )
    parser.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help="where Lance tables live (path or URI)")
    return parser


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the flags the job did not consume, on a local runner by default."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
    return PipelineOptions(args)


@dataclass(frozen=True)
class JobResult:
    """What a job wrote: the new version and row count of each table."""

    versions: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, warehouse: str, names: Sequence[str]) -> "JobResult":
        """The latest version and row count of each named table of the warehouse."""
        from pipelines import lance_io

        return cls(versions=lance_io.table_versions(warehouse, names), rows=lance_io.table_rows(warehouse, names))

    def summary(self) -> str:
        return "\n".join(
            f"  {name:<8} version {self.versions[name]:>4}  rows {self.rows.get(name, 0):>8}" for name in self.versions
        )
