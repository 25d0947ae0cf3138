"""The `recqa` command: one subcommand per batch job, plus `serve`.

Job modules are imported only when their subcommand runs, so `recqa --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from cli.interrupt import InterruptGuard
from cli.ports import port_problem
from features.errors import InputError
from pipelines.flags import add_warehouse_argument

# subcommand -> (module, function taking argv, one-line help)
JOBS = {
    "build-recs": ("pipelines.build_recs", "run", "interactions + items -> ALS vectors and content embeddings (users, items)"),
    "build-qa": ("pipelines.build_qa", "run", "QA documents -> embeddings + full-text index (answers)"),
    "validate": ("pipelines.validate", "run", "recs | qa: read a build's inputs as it would (same flags), write nothing"),
    "publish": ("pipelines.publish", "run", "release evaluated candidates' table versions together"),
    "rollback": ("pipelines.publish", "rollback", "publish the previous release again"),
    "releases": ("pipelines.listing", "releases", "list the retained releases (the last one is published)"),
    "candidates": ("pipelines.listing", "candidates", "list the built candidates, their verdicts and which is published"),
    "await-service": ("pipelines.publish", "await_service", "wait until a running service serves the published versions"),
    "upsert": ("pipelines.ingest", "upsert", "items | answers FILE: insert or replace, logged for the service and the next builds"),
    "ingest-events": ("pipelines.ingest", "ingest_events", "FILE: log users' events for the service and the next build-recs"),
    "delete": ("pipelines.ingest", "delete", "items | answers | users ID...: delete by id, now and in every later build"),
    "purge": ("pipelines.purge", "run", "users ID...: delete users and remove their events from the warehouse's files"),
}
VERBS = {"publish": "published", "validate": "checked", "await-service": "published", "releases": "published", "rollback": "published", "candidates": "listed",
         "upsert": "logged", "ingest-events": "logged", "delete": "logged", "purge": "purged"}  # what the closing line says instead of "wrote"
# `recqa evaluate <kind>` -> module whose run(argv) returns the report's figures with an exit code
EVALUATIONS = {
    "recs": ("evaluation.evaluate_recs", "ALS as served against popularity, item-kNN and BPR"),
    "qa": ("evaluation.evaluate_qa", "keyword, vector, hybrid and hybrid+MMR answer retrieval"),
}
# `recqa tune <kind>` -> module whose run(argv) writes --out and returns the result
TUNINGS = {
    "recs": ("evaluation.tune_recs", "search ALS and event weighting on a validation split -> build-recs --config"),
    "qa": ("evaluation.tune_qa", "search the hybrid BM25 weight, full-text tokenizer and chunk size on train queries -> build-qa --config"),
}
SERVICE = "serving.service:RecQA"
DEFAULT_HOST = "127.0.0.1"
# Defaults a user's environment may override: the bundled model loads offline, no telemetry,
# Lance's per-write warnings stay quiet, and no "Loading weights" bar each time a model loads.
DEFAULT_ENV = {"HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True", "LANCEDB_LOG": "error", "LANCE_LOG": "error",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
DEFAULT_PORT = 3000
NOTHING_PUBLISHED = "nothing was published (the release is unchanged)"
_INGEST_INTERRUPTED = ("commits to the change log land whole or not at all; those made stay (an upsert or delete sent again "
                       "means the same, an event sent again counts twice)")
# what a Ctrl-C leaves, per command; NOTHING_PUBLISHED for the others
AFTER_INTERRUPT = {
    "publish": "a release lands whole or not at all: `recqa releases` shows which one is published",
    "rollback": "a release lands whole or not at all: `recqa releases` shows which one is published",
    "validate": "nothing was written",
    "candidates": "nothing was changed",
    "releases": "nothing was changed",
    "await-service": "the release is unchanged",
    "upsert": _INGEST_INTERRUPTED,
    "ingest-events": _INGEST_INTERRUPTED,
    "delete": _INGEST_INTERRUPTED,
}
# Library output that tells a user of recqa nothing: (logger, level) ...
QUIET_LOGGERS = {
    # logs with a traceback every exception a step raises, which the command then reports itself
    "apache_beam.runners.common": logging.CRITICAL,
}
# ... root-logger messages (Beam's GCP clients, imported by every pipeline, even for --help) ...
QUIET_ROOT_MESSAGES = ("apitools not found",)
# ... and warnings (implicit converting a matrix it made itself; BLAS threads it is already limited to).
QUIET_WARNINGS = (
    (r"Method expects CSR input", Warning),
    (r".*BLAS.* is configured to use \d+ threads", RuntimeWarning),
)
_BEAM_STEP = re.compile(r" \[while running '[^']*'\]")  # Beam appends its step label to a step's exception


def quiet_third_parties() -> None:
    """Silence third-party noise at its source; called before any job module is imported."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    if not any(getattr(f, "recqa_quiet", False) for f in root.filters):
        def keep(record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(QUIET_ROOT_MESSAGES)
        keep.recqa_quiet = True
        root.addFilter(keep)
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def _error_text(error: BaseException) -> str:
    """The job's own message, without the Beam step label it may carry."""
    return _BEAM_STEP.sub("", str(error))


def _guard(command: str) -> InterruptGuard:
    after = AFTER_INTERRUPT.get(command.split()[0], NOTHING_PUBLISHED)
    return InterruptGuard(f"recqa {command}: interrupted; {after}")


def _configure(loggers: Sequence[str] = ("pipelines",)) -> None:
    """Logging and environment of a command that runs work (not of --help)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in loggers:
        logging.getLogger(name).setLevel(logging.INFO)  # our progress lines, not Beam's chatter
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)


def _serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="recqa serve", description="Serve the HTTP API over a warehouse (BentoML).")
    add_warehouse_argument(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    from features.schemas import DEFAULT_MODEL_NAME

    parser.add_argument("--model", default=None,
                        help=f"sentence-transformers model name or folder (default: $RECQA_MODEL if set, else {DEFAULT_MODEL_NAME})")
    args = parser.parse_args(argv)
    if problem := port_problem(args.host, args.port):  # before BentoML starts: one line, not its traceback
        print(f"recqa serve: {problem}: stop it or pass another --port", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env["RECQA_WAREHOUSE"] = args.warehouse if "://" in args.warehouse else str(Path(args.warehouse).resolve())
    if args.model:
        env["RECQA_MODEL"] = args.model
    for key, value in DEFAULT_ENV.items():
        env.setdefault(key, value)
    from serving.settings import GuardSettings, ServiceSettings, SettingsError, WorkerSettings

    try:  # a bad RECQA_* value fails here in one line; inside BentoML its workers would restart forever
        ServiceSettings.from_env(env)
        WorkerSettings.from_env(env)
        GuardSettings.from_env(env)
    except SettingsError as error:
        print(f"recqa serve: {error}", file=sys.stderr)
        return 1
    spec = importlib.util.find_spec("serving")
    working_dir = str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    command = [bentoml, "serve", SERVICE, "--working-dir", working_dir, "--host", args.host, "--port", str(args.port)]
    os.execve(bentoml, command, env)  # the server replaces this process: signals reach it directly
    return 0  # pragma: no cover


def _failed(guard: InterruptGuard, error: Exception, label: str, expected: tuple[type[Exception], ...]) -> int:
    """The exit code of a command whose work raised `error`: an interrupt's (130) whatever type a
    library turned the KeyboardInterrupt into; 1 with the job's own message, not a traceback, for
    the `expected` types; anything else is a bug and raises."""
    if guard.interrupted:
        return guard.announce()
    if not isinstance(error, expected):
        raise error
    print(f"recqa {label}: {_error_text(error)}", file=sys.stderr)
    return 1


def _kind_command(command: str, kinds_table: dict, argv: Sequence[str], usage: str) -> tuple[str, dict] | int:
    """`recqa <command> <kind> ...`: run the kind's module; (kind, its result), or an exit code."""
    kinds = "\n".join(f"  {kind:<5} {help_}" for kind, (_, help_) in kinds_table.items())
    if not argv or argv[0] not in kinds_table:
        print(f"usage: recqa {command} <kind> {usage}\n\nkinds:\n{kinds}", file=sys.stderr if argv else sys.stdout)
        return 2
    _configure(("pipelines.progress",))
    with _guard(f"{command} {argv[0]}") as guard:
        try:
            run = importlib.import_module(kinds_table[argv[0]][0]).run
            return argv[0], run(argv[1:])
        except KeyboardInterrupt:
            return guard.announce()
        except Exception as error:
            return _failed(guard, error, f"{command} {argv[0]}", (InputError, ValueError, RuntimeError, FileNotFoundError))


def _evaluate(argv: Sequence[str]) -> int:
    outcome = _kind_command("evaluate", EVALUATIONS, argv, "[--help] [flags]")
    return outcome if isinstance(outcome, int) else int(outcome[1]["exit_code"])


def _tune(argv: Sequence[str]) -> int:
    outcome = _kind_command("tune", TUNINGS, argv, "--out FILE [--help] [flags]")
    if isinstance(outcome, int):
        return outcome
    kind, result = outcome
    edge = f", on the edge: {', '.join(result['on_edge'])}" if result["on_edge"] else ""
    print(f"recqa tune {kind}: wrote {result['out']}\n  {result['metric']} on the tuning queries: "
          f"{result['best']:.4f} tuned against {result['default']:.4f} with the starting flags ({len(result['trials'])} trials{edge})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `recqa` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_third_parties()
    commands = "\n".join(f"  {name:<11} {help_}" for name, (_, _, help_) in JOBS.items())
    usage = f"usage: recqa [--version] <command> [--help] [flags]\n\ncommands:\n{commands}\n  evaluate    recs | qa: offline metrics against baselines, report and gates\n  tune        recs | qa: search the build's settings on a validation split -> --config JSON\n  serve       serve the HTTP API on {DEFAULT_HOST}:{DEFAULT_PORT}\n"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"recqa {importlib.metadata.version('recqa')}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return _serve(rest)
    if command == "evaluate":
        return _evaluate(rest)
    if command == "tune":
        return _tune(rest)
    if command not in JOBS:
        print(f"recqa: unknown command '{command}'\n\n{usage}", file=sys.stderr)
        return 2
    module, function, _ = JOBS[command]
    _configure()
    with _guard(command) as guard:
        try:
            job = getattr(importlib.import_module(module), function)
            result = job(rest)
        except KeyboardInterrupt:
            return guard.announce()
        except Exception as error:
            return _failed(guard, error, command, (InputError, ValueError, RuntimeError))
    print(f"recqa {command}: {VERBS.get(command, 'wrote')}\n{result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
