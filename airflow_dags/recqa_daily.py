"""recqa_daily: rebuild, evaluate and publish the recqa tables once per daily data interval.

validate_inputs -> tune_recs -> build_recs, and build_qa (in parallel) -> evaluate_recs, evaluate_qa (gates) ->
publish -> await_service. Every task runs the `recqa` CLI in bash, so the project may live in
Airflow's environment or in its own (point the `recqa` setting at that environment's command).

One candidate per build moves through the run: each build prints `candidate <ID>` as its last
line, which Airflow pushes to XCom; its evaluate task judges exactly that candidate (its table
versions, its configuration, the inputs its build read) and records the verdict in it, and
`publish` releases exactly the two candidates, only if both verdicts passed. A later build in
the same warehouse cannot slip into the release. An XCom that is not `candidate <ID>` with a
well-formed id fails the task that reads it, naming the build (see candidate_id). A failing
gate fails its evaluate task; `publish` then never runs and the current release, which the
service follows, stays where it was.

Each setting is taken from the run's params (the trigger form or `--conf`), else from the
Airflow Variable `recqa_<name>`, else from the default below (the bundled sample data next to
this file). In paths and flags `{ds}` / `{ds_nodash}` become the run's data-interval start
(`2026-01-31` / `20260131`), so `s3://bucket/events/dt={ds}/*.parquet` reads the interval's
partition. Flags are data: each `*_flags` setting is split into words by shell quoting rules and
every word reaches `recqa` quoted, so `;`, `|`, `$(...)` and the like in a flag are never run; a
setting that does not split, does not start with a `--flag` or holds a bare shell operator
fails the task (see shell_words). Reports go to `<reports>/<ds>/{recs,qa}` and rejects to
`<warehouse>/_rejects/<ds>/`, so re-running an interval rewrites its own outputs; runs are
serialised (max_active_runs=1) because they share the warehouse and its release log.
No credentials here: storage credentials come from the workers' environment.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

DAG_ID = "recqa_daily"
PROJECT_DIR = Path(__file__).resolve().parents[1]  # the bundled data lives beside airflow_dags/
DATA_DIR = PROJECT_DIR / "data"
VARIABLE_PREFIX = "recqa_"
# Tasks exist only for intervals after the start date; the bundled sample data is from 2015.
START_DATE = datetime(2015, 1, 1, tzinfo=timezone.utc)
BUILD_RETRIES = 2
BUILD_RETRY_DELAY = timedelta(minutes=2)
BUILD_MAX_RETRY_DELAY = timedelta(minutes=30)
BUILD_TIMEOUT = timedelta(hours=3)


def _default_recqa() -> str:
    """The recqa beside this interpreter when Airflow shares the project's environment."""
    beside = Path(sys.executable).with_name("recqa")
    return str(beside) if beside.exists() else "recqa"


# name -> (default, description). Paths are single values; `*_flags` are words (see shell_words).
SETTINGS: dict[str, tuple[str, str]] = {
    "recqa": (_default_recqa(), "the recqa command, e.g. /opt/recqa/.venv/bin/recqa when Airflow has its own environment"),
    "warehouse": (str(PROJECT_DIR / "warehouse"), "where the Lance tables live: a folder or s3://bucket/prefix"),
    "reports": (str(PROJECT_DIR / "reports"), "evaluation reports go to <reports>/<ds>/recs and <reports>/<ds>/qa"),
    "interactions": (str(DATA_DIR / "ms-store" / "demoUsage.csv"), "interactions file, glob or URI; {ds} is the interval"),
    "items": (str(DATA_DIR / "ms-store" / "demoCatalog.csv"), "items (catalogue) file, glob or URI; {ds} is the interval"),
    "recs_format": ("ms-store", "layout of interactions and items: ms-store (bundled) or contract"),
    "documents": (str(DATA_DIR / "stackfaq" / "stackExchange-FAQ.json"), "QA documents file, glob or URI; {ds} is the interval"),
    "qa_format": ("stackfaq", "layout of the documents: stackfaq (bundled) or contract"),
    "recs_config": ("", "a tuned configuration file for build-recs (`recqa tune recs --out FILE`), given as --config; "
                    "empty: tune_recs tunes on the interval's inputs and build-recs takes its result"),
    "recs_tune_trials": ("30", "trials of tune_recs (Optuna) when recs_config is empty"),
    "recs_flags": ("", "more build-recs flags, also given to `validate recs` (e.g. --map user_id=userId --factors 64)"),
    "qa_flags": ("", "more build-qa flags, also given to `validate qa` (e.g. --map doc_id=_id --chunk-words 160)"),
    "recs_evaluate_flags": ("--must-beat popularity", "evaluate recs flags: split and gates (--min-ndcg, --must-beat, ...)"),
    "qa_evaluate_flags": (
        f"--stackfaq {shlex.quote(str(DATA_DIR / 'stackfaq' / 'stackExchange-FAQ.json'))}",
        "evaluate qa flags: judged queries (--stackfaq or --beir) and gates (--min-ndcg, ...)",
    ),
    "service_url": ("", "a running `recqa serve` to wait for until it serves the new versions; empty: it picks the release up"),
}
PATHS = ("recqa", "warehouse", "reports", "interactions", "items", "recs_format", "recs_config", "recs_tune_trials", "documents",
         "qa_format", "service_url")


SHELL_OPERATOR_CHARS = frozenset(";&|<>()")


def shell_words(value: str, name: str) -> str:
    """A `*_flags` setting as bash words that are only data: split like a shell, each word quoted.

    Quoting is what keeps a flag from running anything; the refusals only turn what cannot be a
    recqa flag (a command, a bare `;` or `|`) into an error naming the setting rather than
    stray words that Beam would drop.
    """
    try:
        words = shlex.split(str(value))
    except ValueError as error:  # an unbalanced quote or a trailing backslash
        raise ValueError(f"{name}: cannot split {value!r} into words ({error})") from None
    if words and not words[0].startswith("--"):
        raise ValueError(f"{name}: must start with a --flag, not {words[0]!r} (flags are passed to recqa, not run)")
    for word in words:
        if word and set(word) <= SHELL_OPERATOR_CHARS:
            raise ValueError(f"{name}: {word!r} is a shell operator, not a flag value (flags are passed to recqa, not run)")
    return " ".join(shlex.quote(word) for word in words)


# A build prints `candidate <ID>` last; the ID as recqa makes it: kind, UTC time, 6 hex digits.
CANDIDATE_LINE = re.compile(r"candidate (\S+)")
CANDIDATE_ID = re.compile(r"^(recs|qa)-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$")


def candidate_id(xcom: object, task_id: str, kind: str) -> str:
    """The candidate id in a build's XCom (`candidate <ID>`), quoted for bash; else a ValueError.

    The XCom is whatever the build printed last, so anything but a well-formed id of the
    expected kind fails the task reading it, naming the build, before bash sees a word of it.
    """
    line = CANDIDATE_LINE.fullmatch(xcom.strip()) if isinstance(xcom, str) else None
    shown = repr(xcom) if len(repr(xcom)) <= 200 else f"{repr(xcom)[:200]}..."
    where = f"{task_id}: its XCom (the last line it printed) is {shown}"
    if line is None:
        raise ValueError(f"{where}, not 'candidate <ID>'; does its recqa print the candidate it built?")
    candidate = CANDIDATE_ID.fullmatch(line[1])
    if candidate is None:
        raise ValueError(f"{where}, whose id does not match {CANDIDATE_ID.pattern} (e.g. {kind}-20261130T101500-3fa9c1)")
    if candidate[1] != kind:
        raise ValueError(f"{task_id}: its XCom names the {candidate[1]} candidate {line[1]!r}, expected a {kind} candidate")
    return shlex.quote(line[1])


def _setting(name: str, then: str = "") -> str:
    """Jinja for a setting: run param, else the Airflow Variable, else the default; {ds} filled in."""
    default, _ = SETTINGS[name]
    return (
        # params[...] rather than params.name: `params.items` would be the dict method
        f"{{{{ (params[{json.dumps(name)}] or var.value.get({json.dumps(VARIABLE_PREFIX + name)}, {json.dumps(default)}))"
        f" | replace('{{ds}}', ds) | replace('{{ds_nodash}}', ds_nodash){then} }}}}"
    )


def _flags(name: str) -> str:
    """Jinja for a `*_flags` setting: its words, each quoted for bash (the `shell_words` filter)."""
    return _setting(name, then=f" | shell_words({json.dumps(name)})")


def _candidate(build: str, kind: str) -> str:
    """Jinja for the id of the candidate `build` made in this run, checked and quoted (`candidate_id`)."""
    return f"{{{{ ti.xcom_pull(task_ids={json.dumps(build)}) | candidate_id({json.dumps(build)}, {json.dumps(kind)}) }}}}"


def _candidate_line_last(command: str) -> str:
    """A build's command that ends by printing the build's last stdout line (`candidate <ID>`) again.

    Airflow pushes the last line of the task's output, where the command's stderr is merged in:
    a log line written after the candidate would otherwise take its place. The build's stdout is
    still logged as it comes (tee to fd 3, the task's stdout).
    """
    return f'exec 3>&1\nlast="$({command} 3>&- | tee /dev/fd/3 | tail -n 1)"\nprintf \'%s\\n\' "$last"'


# Paths reach bash as DAG_<NAME> environment variables (quoted where used); flags as quoted words.
ENV = {"DS": "{{ ds }}", **{f"DAG_{name.upper()}": _setting(name) for name in PATHS}}
RECS_INPUTS = '--input-format "$DAG_RECS_FORMAT" --interactions "$DAG_INTERACTIONS" --items "$DAG_ITEMS"'
QA_INPUTS = '--input-format "$DAG_QA_FORMAT" --documents "$DAG_DOCUMENTS"'
RECS_CANDIDATE = _candidate("build_recs", "recs")
QA_CANDIDATE = _candidate("build_qa", "qa")
TUNED_RECS = '"$DAG_REPORTS/$DS/tuned-recs.json"'
COMMANDS = {
    "validate_inputs": f'"$DAG_RECQA" validate recs {RECS_INPUTS} {_flags("recs_flags")}\n'
    f'"$DAG_RECQA" validate qa {QA_INPUTS} {_flags("qa_flags")}',
    # the build is what gets judged, so it is built tuned: recs_config, or this interval's tuning
    "tune_recs": f'if [ -n "$DAG_RECS_CONFIG" ]; then echo "recs_config is set: build-recs takes $DAG_RECS_CONFIG"; exit 0; fi\n'
    f'"$DAG_RECQA" tune recs {RECS_INPUTS} --out {TUNED_RECS} --trials "$DAG_RECS_TUNE_TRIALS" {_flags("recs_flags")}',
    # --config: recs_config when set, else tune_recs' output; either way one quoted word
    "build_recs": _candidate_line_last(
        f'"$DAG_RECQA" build-recs --warehouse "$DAG_WAREHOUSE" {RECS_INPUTS} --config "${{DAG_RECS_CONFIG:-{TUNED_RECS[1:-1]}}}" '
        f'--rejects "$DAG_WAREHOUSE/_rejects/$DS/build-recs" {_flags("recs_flags")}'
    ),
    "build_qa": _candidate_line_last(
        f'"$DAG_RECQA" build-qa --warehouse "$DAG_WAREHOUSE" {QA_INPUTS} '
        f'--rejects "$DAG_WAREHOUSE/_rejects/$DS/build-qa" {_flags("qa_flags")}'
    ),
    # the candidate carries its configuration and inputs: evaluate reads the same files, the same way
    "evaluate_recs": f'"$DAG_RECQA" evaluate recs --warehouse "$DAG_WAREHOUSE" --candidate {RECS_CANDIDATE} '
    f'--out "$DAG_REPORTS/$DS/recs" {_flags("recs_evaluate_flags")}',
    "evaluate_qa": f'"$DAG_RECQA" evaluate qa --warehouse "$DAG_WAREHOUSE" --candidate {QA_CANDIDATE} '
    f'--out "$DAG_REPORTS/$DS/qa" {_flags("qa_evaluate_flags")}',
    # exactly the two judged candidates; recqa refuses one whose evaluation did not pass
    "publish": f'"$DAG_RECQA" publish --warehouse "$DAG_WAREHOUSE" --candidate {RECS_CANDIDATE} --candidate {QA_CANDIDATE}',
    "await_service": '"$DAG_RECQA" await-service --warehouse "$DAG_WAREHOUSE" --service-url "$DAG_SERVICE_URL"',
}
BUILDS = ("build_recs", "build_qa")


def _bash(task_id: str, **kwargs) -> BashOperator:
    command = "set -euo pipefail\n" + COMMANDS[task_id]
    return BashOperator(task_id=task_id, bash_command=command, env=ENV, append_env=True, **kwargs)


with DAG(
    dag_id=DAG_ID,
    description="recqa: validate, build, evaluate with gates, publish; one daily data interval per run",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "recqa", "retries": 0},
    user_defined_filters={"shell_words": shell_words, "candidate_id": candidate_id},
    params={name: Param(None, type=["null", "string"], description=f"{text} (default: {default!r})") for name, (default, text) in SETTINGS.items()},
    tags=["recqa"],
) as dag:
    validate_inputs = _bash("validate_inputs")
    tune_recs = _bash("tune_recs", execution_timeout=BUILD_TIMEOUT)
    builds = [
        _bash(
            task_id,
            retries=BUILD_RETRIES,
            retry_delay=BUILD_RETRY_DELAY,
            retry_exponential_backoff=2.0,
            max_retry_delay=BUILD_MAX_RETRY_DELAY,
            execution_timeout=BUILD_TIMEOUT,
        )
        for task_id in BUILDS
    ]
    evaluate_recs = _bash("evaluate_recs")
    evaluate_qa = _bash("evaluate_qa")
    publish = _bash("publish")
    await_service = _bash("await_service")

    validate_inputs >> tune_recs >> builds[0]
    validate_inputs >> builds[1]
    builds[0] >> evaluate_recs
    builds[1] >> evaluate_qa
    [evaluate_recs, evaluate_qa] >> publish >> await_service
