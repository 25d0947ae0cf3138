"""The `recqa` command: one subcommand per batch job, plus `serve`.

Job modules are imported only when their subcommand runs, so `recqa --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.ports import port_problem
from features.errors import InputError
from features.locations import add_warehouse_argument

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
}
VERBS = {"publish": "published", "validate": "checked", "await-service": "published", "releases": "published", "rollback": "published", "candidates": "listed"}  # what the closing line says instead of "wrote"
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
# and Lance's per-write warnings stay quiet.
DEFAULT_ENV = {"HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True", "LANCEDB_LOG": "error", "LANCE_LOG": "error"}
DEFAULT_PORT = 3000


def _serve(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="recqa serve", description="Serve the HTTP API over a warehouse (BentoML).")
    add_warehouse_argument(parser)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--model", default=None, help="sentence-transformers model name or folder")
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
    spec = importlib.util.find_spec("serving")
    working_dir = str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    command = [bentoml, "serve", SERVICE, "--working-dir", working_dir, "--host", args.host, "--port", str(args.port)]
    os.execve(bentoml, command, env)  # the server replaces this process: signals reach it directly
    return 0  # pragma: no cover


def _kind_command(command: str, kinds_table: dict, argv: Sequence[str], usage: str) -> tuple[str, dict] | int:
    """`recqa <command> <kind> ...`: run the kind's module; (kind, its result), or an exit code."""
    kinds = "\n".join(f"  {kind:<5} {help_}" for kind, (_, help_) in kinds_table.items())
    if not argv or argv[0] not in kinds_table:
        print(f"usage: recqa {command} <kind> {usage}\n\nkinds:\n{kinds}", file=sys.stderr if argv else sys.stdout)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    run = importlib.import_module(kinds_table[argv[0]][0]).run
    try:
        return argv[0], run(argv[1:])
    except (InputError, ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"recqa {command} {argv[0]}: {error}", file=sys.stderr)
        return 1


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
    commands = "\n".join(f"  {name:<11} {help_}" for name, (_, _, help_) in JOBS.items())
    usage = f"usage: recqa <command> [--help] [flags]\n\ncommands:\n{commands}\n  evaluate    recs | qa: offline metrics against baselines, report and gates\n  tune        recs | qa: search the build's settings on a validation split -> --config JSON\n  serve       serve the HTTP API on {DEFAULT_HOST}:{DEFAULT_PORT}\n"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
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
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.INFO)  # our progress lines, not Beam's chatter
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)
    job = getattr(importlib.import_module(module), function)
    try:
        result = job(rest)
    except (InputError, ValueError, RuntimeError) as error:  # the job's own message, not a traceback
        print(f"recqa {command}: {error}", file=sys.stderr)
        return 1
    print(f"recqa {command}: {VERBS.get(command, 'wrote')}\n{result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
