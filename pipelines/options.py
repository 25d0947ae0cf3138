"""Command-line handling shared by the batch jobs: job flags first, the rest to Beam."""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from features.adapters import DEFAULT_MAX_TEXT_CHARS
from features.errors import InputError
from features.schemas import ALS_INDEX
from pipelines.flags import add_warehouse_argument
from pipelines.transforms.quality import DEFAULT_MAX_REJECT_FRACTION

# Beam's default runner tries Prism first, which downloads a binary; name a local one.
DEFAULT_RUNNER = "FnApiRunner"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help unless it already speaks of its default or is required.

    Unlike argparse.ArgumentDefaultsHelpFormatter, it leaves alone the helps that already say
    their default in words (e.g. "default <warehouse>/_rejects/<job>-<time>").
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return text if "required" in text.lower() else f"{text} (required)".strip()
        if "default" in text.lower():
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})".strip()
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})".strip()


def command_parser(prog: str, description: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    """The argparse parser of a recqa command: every flag's help shows its default."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=DefaultsHelpFormatter, **kwargs)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the flags every job has; Beam's own flags are left for Beam."""
    parser = command_parser(
        prog,
        description,
        epilog="Apache Beam's flags (--runner, --project, --flink_master, ...) pass to Beam unchanged; any other flag is refused.",
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
    parser.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS, help="rows with a longer text are rejected")
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
    return {"file": os.path.abspath(path), "config": dict(config), "split": data.get("split"), "best": data.get("best"),
            "changes_version": data.get("changes_version")}


def tuned_record(args: argparse.Namespace) -> dict[str, Any] | None:
    """What a candidate keeps of the --config file it was built from: where, what tuning chose, on
    which split, and which of its settings flags overrode. Read once, at parse time."""
    tuned = getattr(args, "tuned", None)
    if not tuned:
        return None
    overridden = {key: getattr(args, key) for key, value in tuned["config"].items() if getattr(args, key) != value}
    return {**tuned, "overridden": overridden}


def tuned_snapshot_warning(args: argparse.Namespace, changes_version: int) -> str | None:
    """A warning when the --config file was tuned on another change log snapshot than the build applies.

    Tuning scored the data as the log stood then; the build may still use its settings, but
    the user should know they were chosen on other data. None when they agree (or the file
    predates the log).
    """
    tuned = getattr(args, "tuned", None) or {}
    then = tuned.get("changes_version")
    if then is None or int(then) == int(changes_version):
        return None
    return (f"--config {tuned.get('file')} was tuned on change log version {then}; this build applies version {changes_version} "
            "(tune again to choose settings on the data as it is now)")


def warn_tuned_snapshot(args: argparse.Namespace, changes_version: int) -> None:
    """Log tuned_snapshot_warning, if any."""
    import logging

    if warning := tuned_snapshot_warning(args, changes_version):
        logging.getLogger(__name__).warning(warning)


def parse_job_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, kind: str, also: Sequence[str] = ()
) -> tuple[argparse.Namespace, list[str]]:
    """The job's flags over the --config file's defaults, and the Beam flags left over.

    A flag given beside --config wins; the candidate records which tuned settings it overrode.
    A flag neither the job nor Beam knows fails here, before any work, suggesting the close
    match among the job's flags, `also` (the flags of a command wrapping the job) and Beam's.
    """
    args, rest = parser.parse_known_args(argv)
    refuse_unknown(rest, parser.prog, [*flag_names(parser), *also], beam=True)
    tuned = read_config(args.config, parser, kind) if args.config else None
    if tuned:
        parser.set_defaults(**tuned["config"])
    args, rest = parser.parse_known_args(argv)
    args.tuned = tuned
    return args, rest


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """A command's flags, for a command that runs no pipeline: any other flag, Beam's included, fails naming it."""
    args, rest = parser.parse_known_args(argv)
    refuse_unknown(rest, parser.prog, flag_names(parser), beam=False)
    return args


def rejects_dir(args: argparse.Namespace, job: str) -> str:
    """Where this run's rejects go: the flag, or a fresh folder under the warehouse."""
    return args.rejects or f"{args.warehouse.rstrip('/')}/_rejects/{job}-{time.strftime('%Y%m%dT%H%M%S')}"


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the flags the job did not consume, on a local runner by default."""
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={DEFAULT_RUNNER}")
    return PipelineOptions(args)


def _beam_parser() -> argparse.ArgumentParser:
    """A parser of every flag Beam's options classes define, as PipelineOptions.get_all_options builds it."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    return parser


@functools.cache
def beam_flag_names() -> tuple[str, ...]:
    """Every `--flag` Apache Beam's pipeline options know (`--runner`, `--flink_master`, ...)."""
    return tuple(sorted({s for a in _beam_parser()._actions for s in a.option_strings if s.startswith("--")}))


def flag_names(parser: argparse.ArgumentParser) -> list[str]:
    """The `--flags` a parser defines."""
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def unknown_flags(beam_args: Sequence[str]) -> list[str]:
    """The arguments among `beam_args` that no Beam options class knows either.

    Beam only logs "Unparseable argument" for these and runs without them: a typo such as
    `--halflife-days 30` would pass silently.
    """
    _, unknown = _beam_parser().parse_known_args(list(beam_args))
    return list(unknown)


def refuse_unknown(rest: Sequence[str], prog: str, known: Sequence[str], beam: bool) -> None:
    """Raise InputError naming every flag of `rest` the command does not take, with the close match.

    `rest` is what the command's parser left over. With `beam`, Beam's own flags are taken (they
    pass to Beam) and suggested; without, they are refused too: the command runs no pipeline.
    """
    leftover = unknown_flags(rest) if beam else list(rest)
    if not leftover:
        return
    flags = [arg.split("=", 1)[0] for arg in leftover if arg.startswith("-")]
    if not flags:
        raise InputError(f"unexpected argument {leftover[0]!r} (a value without its flag?); `{prog} --help` lists the flags")
    candidates = [*known, *(beam_flag_names() if beam else ())]
    problems = []
    for flag in dict.fromkeys(flags):
        if not beam and flag in beam_flag_names():
            problems.append(f"{flag} is an Apache Beam flag, but {prog} runs no Beam pipeline")
            continue
        close = difflib.get_close_matches(flag, candidates, n=1, cutoff=0.6)
        problems.append(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise InputError(f"{'; '.join(problems)}; `{prog} --help` lists the flags")


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
