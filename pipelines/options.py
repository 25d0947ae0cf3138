"""Command-line handling shared by the batch jobs: job flags first, the rest to Beam."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from features.adapters import DEFAULT_MAX_TEXT_CHARS
from features.errors import InputError
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
        "--config",
        default=None,
        metavar="FILE",
        help="JSON whose 'config' gives this job's flag defaults (as `recqa tune` writes it); flags given here still win",
    )
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


def read_config(path: str, parser: argparse.ArgumentParser, kind: str) -> dict[str, Any]:
    """A tuned-configuration file, checked against the job's flags: {"config": {dest: value}, ...}.

    Accepts `recqa tune`'s output (`{"kind": ..., "config": {...}, "split": ...}`) or a bare
    `{dest: value}` object. An unknown key, a file of the other kind or one with no settings
    fails at once, naming it.
    """
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read '{path}': {error}", field="--config") from error
    if not isinstance(data, dict):
        raise InputError(f"'{path}' is not a JSON object", field="--config")
    if data.get("kind", kind) != kind:
        raise InputError(f"'{path}' configures {data['kind']}, not {kind}", field="--config")
    if "kind" in data and not isinstance(data.get("config"), dict):
        raise InputError(f"'{path}' has no 'config' object of settings", field="--config")
    config = data["config"] if "kind" in data else data
    dests = {action.dest for action in parser._actions} - {"help", "config", "warehouse"}
    if unknown := sorted(set(config) - dests):
        raise InputError(f"'{path}' sets unknown settings {unknown}; known: {sorted(dests)}", field="--config")
    return {"file": os.path.abspath(path), "config": dict(config), "split": data.get("split"), "best": data.get("best")}


def tuned_record(args: argparse.Namespace) -> dict[str, Any] | None:
    """What a candidate keeps of the --config file it was built from: where, what tuning chose, on
    which split, and which of its settings flags overrode. Read once, at parse time."""
    tuned = getattr(args, "tuned", None)
    if not tuned:
        return None
    overridden = {key: getattr(args, key) for key, value in tuned["config"].items() if getattr(args, key) != value}
    return {**tuned, "overridden": overridden}


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, kind: str) -> tuple[argparse.Namespace, list[str]]:
    """The job's flags over the --config file's defaults, and the rest for Beam.

    A flag given beside --config wins; the candidate records which tuned settings it overrode.
    """
    args, _ = parser.parse_known_args(argv)
    tuned = read_config(args.config, parser, kind) if args.config else None
    if tuned:
        parser.set_defaults(**tuned["config"])
    args, rest = parser.parse_known_args(argv)
    args.tuned = tuned
    return args, rest


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
    candidate: str | None = None  # the build's candidate id: what evaluate and publish take

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

    @classmethod
    def of_candidate(cls, candidate, result) -> "JobResult":
        """A build's result: exactly the versions its candidate recorded, and the run's stage table."""
        from pipelines.summary import format_table, stage_rows

        return cls(versions=dict(candidate.tables), rows=dict(candidate.rows), stages=format_table(stage_rows(result)), candidate=candidate.id)

    def summary(self) -> str:
        tables = "\n".join(
            f"  {name:<8} version {self.versions[name]:>4}" + (f"  rows {self.rows[name]:>8}" if name in self.rows else "")
            for name in self.versions
        )
        text = f"{self.stages}\n\n{tables}" if self.stages else tables
        # last, alone on its line: scripts and Airflow's XCom take the id from here
        return f"{text}\ncandidate {self.candidate}" if self.candidate else text
