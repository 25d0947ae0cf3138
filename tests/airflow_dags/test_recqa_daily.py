"""The recqa_daily DAG as Airflow parses it: tasks, order, retries, and what its templates render."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.airflow_dags.conftest import DAGS, ROOT

TASKS = {
    "validate_inputs": set(),
    "tune_recs": {"validate_inputs"},
    "build_recs": {"tune_recs"},
    "build_qa": {"validate_inputs"},
    "evaluate_recs": {"build_recs"},
    "evaluate_qa": {"build_qa"},
    "publish": {"evaluate_recs", "evaluate_qa"},
    "await_service": {"publish"},
}


@pytest.fixture(scope="module")
def dag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["recqa_daily"]


# What the builds of a run pushed to XCom (their last output line), for the tasks that read it.
XCOMS = {"build_recs": "candidate recs-20260131T010203-0a1b2c", "build_qa": "candidate qa-20260131T010204-3d4e5f"}


def render(dag, task_id: str, params: dict | None = None, variables: dict | None = None, ds: str = "2026-01-31",
           xcoms: dict | None = None) -> SimpleNamespace:
    """The task's command and environment as a run of interval `ds` would render them."""
    task = dag.get_task(task_id)
    variables = variables or {}
    xcoms = XCOMS if xcoms is None else xcoms
    context = {
        "params": {**{name: None for name in dag.params}, **(params or {})},
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "var": SimpleNamespace(value=SimpleNamespace(get=lambda key, default=None: variables.get(key, default))),
        "ti": SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": xcoms.get(task_ids)),
    }
    env = dag.get_template_env()
    return SimpleNamespace(command=task.render_template(task.bash_command, context, jinja_env=env),
                           env=task.render_template(task.env, context, jinja_env=env))


def test_dagbag_has_no_import_errors_and_the_expected_order(dag):
    assert {task.task_id: set(task.upstream_task_ids) for task in dag.tasks} == TASKS


def test_builds_retry_with_backoff_and_the_gated_steps_do_not(dag):
    for task_id in ("build_recs", "build_qa"):
        task = dag.get_task(task_id)
        assert task.retries >= 1 and task.retry_exponential_backoff > 1 and task.max_retry_delay is not None
    for task_id in ("evaluate_recs", "evaluate_qa", "publish"):
        assert dag.get_task(task_id).retries == 0  # a failed gate fails the same way twice


def test_runs_are_serialised_and_daily_with_a_data_interval(dag):
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"


def test_publish_waits_for_every_upstream_success(dag):
    """A failing gate must leave publish upstream_failed, never run it."""
    assert str(dag.get_task("publish").trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS")


def test_every_task_calls_the_recqa_cli(dag):
    for task in dag.tasks:
        assert '"$DAG_RECQA" ' in task.bash_command, task.task_id
    # Airflow shares this environment here, so the default is the recqa beside its interpreter
    assert render(dag, "publish").env["DAG_RECQA"] == str(Path(sys.executable).with_name("recqa"))
    assert render(dag, "publish", params={"recqa": "/opt/recqa/bin/recqa"}).env["DAG_RECQA"] == "/opt/recqa/bin/recqa"


def test_defaults_point_at_the_bundled_data(dag):
    env = render(dag, "build_recs").env
    assert env["DAG_INTERACTIONS"] == str(ROOT / "data" / "ms-store" / "demoUsage.csv")
    assert env["DAG_ITEMS"] == str(ROOT / "data" / "ms-store" / "demoCatalog.csv")
    assert env["DAG_DOCUMENTS"] == str(ROOT / "data" / "stackfaq" / "stackExchange-FAQ.json")
    assert env["DAG_WAREHOUSE"] == str(ROOT / "warehouse")
    assert "--must-beat popularity" in render(dag, "evaluate_recs").command


def test_a_param_beats_a_variable_which_beats_the_default(dag):
    variables = {"recqa_warehouse": "s3://from-variable/wh", "recqa_reports": "/var/reports"}
    env = render(dag, "build_qa", params={"warehouse": "s3://from-param/wh"}, variables=variables).env
    assert env["DAG_WAREHOUSE"] == "s3://from-param/wh"
    assert env["DAG_REPORTS"] == "/var/reports"
    assert render(dag, "build_qa", variables=variables).env["DAG_WAREHOUSE"] == "s3://from-variable/wh"


def test_inputs_and_outputs_are_the_partition_of_the_data_interval(dag):
    params = {"interactions": "s3://bucket/events/dt={ds}/*.parquet", "documents": "s3://bucket/faq/{ds_nodash}.jsonl"}
    rendered = render(dag, "build_recs", params=params, ds="2026-01-31")
    assert rendered.env["DAG_INTERACTIONS"] == "s3://bucket/events/dt=2026-01-31/*.parquet"
    assert rendered.env["DS"] == "2026-01-31"
    assert '--rejects "$DAG_WAREHOUSE/_rejects/$DS/build-recs"' in rendered.command
    assert render(dag, "build_qa", params=params).env["DAG_DOCUMENTS"] == "s3://bucket/faq/20260131.jsonl"
    assert '--out "$DAG_REPORTS/$DS/recs"' in render(dag, "evaluate_recs").command


# setting -> the tasks whose command it extends, and the recqa subcommand each runs it with
FLAG_TASKS = {
    "recs_flags": {"validate_inputs": ["validate", "recs"], "tune_recs": ["tune", "recs"], "build_recs": ["build-recs"]},
    "qa_flags": {"validate_inputs": ["validate", "qa"], "build_qa": ["build-qa"]},
    "recs_evaluate_flags": {"evaluate_recs": ["evaluate", "recs"]},
    "qa_evaluate_flags": {"evaluate_qa": ["evaluate", "qa"]},
}
# Each would run `touch pwned` (or write a file) if bash saw it as syntax; as data it is words.
INJECTIONS = {
    "--map 'title=Item Title' --factors 8;touch pwned": ["--map", "title=Item Title", "--factors", "8;touch", "pwned"],
    "--factors $(touch pwned)": ["--factors", "$(touch", "pwned)"],
    "--factors `touch pwned`": ["--factors", "`touch", "pwned`"],
    '--map "a=b; touch pwned" --map "c=d | touch pwned" --map "e=f && touch pwned" --map "g=h > pwned"':
        ["--map", "a=b; touch pwned", "--map", "c=d | touch pwned", "--map", "e=f && touch pwned", "--map", "g=h > pwned"],
    '--map "title=$(touch pwned)" --map \'body=`touch pwned`\'': ["--map", "title=$(touch pwned)", "--map", "body=`touch pwned`"],
    "--beir $HOME/* ~ '#x' \"it's\" --x=${IFS}pwned": ["--beir", "$HOME/*", "~", "#x", "it's", "--x=${IFS}pwned"],
}
# Prints its argv as JSON; a build then prints a new candidate as its last stdout line, as recqa
# does, and logs a line to stderr after it (Airflow merges stderr into the output it takes the XCom from).
STUB_RECQA = """#!{python}
import json, secrets, sys, time
print(json.dumps(sys.argv[1:]), flush=True)
kind = {{"build-recs": "recs", "build-qa": "qa"}}.get(sys.argv[1])
if kind:
    print(f"candidate {{kind}}-{{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}}-{{secrets.token_hex(3)}}", flush=True)
    print("INFO a log line after the candidate", file=sys.stderr, flush=True)
"""


def run_in_bash(rendered: SimpleNamespace, folder: Path) -> SimpleNamespace:
    """Run a rendered task with bash in `folder`, `recqa` a stub (STUB_RECQA), as Airflow runs it.

    stderr is merged into stdout as Airflow's SubprocessHook does; `calls` are the stub's argvs,
    `xcom` the last line of the output (what BashOperator pushes).
    """
    stub = folder / "recqa-stub"
    stub.write_text(STUB_RECQA.format(python=sys.executable))
    stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), **rendered.env, "DAG_RECQA": str(stub),
           "DAG_WAREHOUSE": str(folder / "wh"), "DAG_REPORTS": str(folder / "reports")}
    result = subprocess.run(["bash", "-c", rendered.command], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert sorted(path.name for path in folder.iterdir()) == ["recqa-stub"], "the command created a file"
    lines = result.stdout.splitlines()
    calls = [json.loads(line) for line in lines if line.startswith("[")]
    return SimpleNamespace(calls=calls, xcom=lines[-1].rstrip() if lines else "")


@pytest.mark.parametrize("flags", INJECTIONS)
@pytest.mark.parametrize("setting", FLAG_TASKS)
def test_shell_syntax_in_flags_reaches_recqa_as_words_and_never_runs(dag, tmp_path, setting, flags):
    for task_id, subcommand in FLAG_TASKS[setting].items():
        folder = tmp_path / task_id
        folder.mkdir()
        calls = run_in_bash(render(dag, task_id, params={setting: flags}), folder).calls
        (argv,) = [call for call in calls if call[: len(subcommand)] == subcommand]
        assert argv[-len(INJECTIONS[flags]):] == INJECTIONS[flags], task_id


def test_flags_from_a_variable_are_words_too_and_ds_is_filled_in(dag, tmp_path):
    variables = {"recqa_recs_flags": "--map 'title=Item {ds}' --factors $(touch pwned) --tag {ds_nodash}"}
    (argv,) = run_in_bash(render(dag, "build_recs", variables=variables, ds="2026-01-31"), tmp_path).calls
    assert argv[-7:] == ["--map", "title=Item 2026-01-31", "--factors", "$(touch", "pwned)", "--tag", "20260131"]


def test_the_default_flags_arrive_as_their_words(dag, tmp_path):
    (argv,) = run_in_bash(render(dag, "evaluate_qa"), tmp_path).calls
    assert argv == ["evaluate", "qa", "--warehouse", str(tmp_path / "wh"), "--candidate", "qa-20260131T010204-3d4e5f",
                    "--out", str(tmp_path / "reports" / "2026-01-31" / "qa"), "--stackfaq", str(ROOT / "data" / "stackfaq" / "stackExchange-FAQ.json")]
    (argv,) = run_in_bash(render(dag, "build_recs", params={"recs_flags": ""}), tmp_path).calls
    assert argv[-2:] == ["--rejects", f"{tmp_path / 'wh'}/_rejects/2026-01-31/build-recs"]  # an empty setting adds no word


def test_each_evaluate_judges_the_candidate_its_build_printed_and_publish_releases_both(dag, tmp_path):
    """The ids go build -> XCom -> evaluate and publish, each as exactly one word after --candidate."""
    folders = {task_id: tmp_path / task_id for task_id in TASKS}
    for folder in folders.values():
        folder.mkdir()
    built = {task_id: run_in_bash(render(dag, task_id), folders[task_id]) for task_id in ("build_recs", "build_qa")}
    # the stub logs after its candidate line: the XCom is still the candidate line
    ids = {task_id: run.xcom.removeprefix("candidate ") for task_id, run in built.items()}
    assert all(re.fullmatch(r"(recs|qa)-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}", candidate) for candidate in ids.values()), ids
    xcoms = {task_id: run.xcom for task_id, run in built.items()}

    def argv_of(task_id: str) -> list[str]:
        (argv,) = run_in_bash(render(dag, task_id, xcoms=xcoms), folders[task_id]).calls
        return argv

    warehouse = str(folders["evaluate_recs"] / "wh")
    assert argv_of("evaluate_recs") == ["evaluate", "recs", "--warehouse", warehouse, "--candidate", ids["build_recs"],
                                        "--out", str(folders["evaluate_recs"] / "reports" / "2026-01-31" / "recs"),
                                        "--must-beat", "popularity"]  # no inputs, no --work: the candidate has them
    warehouse = str(folders["evaluate_qa"] / "wh")
    assert argv_of("evaluate_qa")[:6] == ["evaluate", "qa", "--warehouse", warehouse, "--candidate", ids["build_qa"]]
    assert argv_of("evaluate_qa").count("--candidate") == 1
    warehouse = str(folders["publish"] / "wh")
    assert argv_of("publish") == ["publish", "--warehouse", warehouse, "--candidate", ids["build_recs"], "--candidate", ids["build_qa"]]


def test_a_build_task_fails_when_its_recqa_fails_even_though_it_prints_after(dag, tmp_path):
    """The build's last line is printed again at the end; a failed build must still fail the task."""
    stub = tmp_path / "recqa-stub"
    stub.write_text(f"#!{sys.executable}\nimport sys\nprint('candidate recs-20260131T010203-0a1b2c')\nsys.exit(3)\n")
    stub.chmod(0o755)
    rendered = render(dag, "build_recs")
    env = {"PATH": os.environ["PATH"], **rendered.env, "DAG_RECQA": str(stub), "DAG_WAREHOUSE": str(tmp_path / "wh")}
    result = subprocess.run(["bash", "-c", rendered.command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3


MALFORMED_XCOMS = {
    None: "is None",  # the build pushed nothing
    "": "is ''",
    "| users | 9 | 0 | 0 | 9 | 1.2 |": "not 'candidate <ID>'",  # what a recqa without candidates prints last
    "recs-20260131T010203-0a1b2c": "not 'candidate <ID>'",
    "candidate recs-20260131T010203-0A1B2C": "whose id does not match ^(recs|qa)-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}$",
    "candidate recs-2026-01-31T010203-0a1b2c": "whose id does not match",
    "candidate recs-20260131T010203-0a1b2c extra": "not 'candidate <ID>'",
    "candidate recs-20260131T010203-0a1b2c; touch pwned": "not 'candidate <ID>'",
    "candidate $(touch pwned)": "not 'candidate <ID>'",
    "candidate $(touch${IFS}pwned)": "whose id does not match",
    "candidate ../../recs-20260131T010203-0a1b2c": "whose id does not match",
    "candidate recs-20260131T010203-0a1b2c\ncandidate qa-20260131T010203-0a1b2c": "not 'candidate <ID>'",
}


@pytest.mark.parametrize("xcom", MALFORMED_XCOMS)
@pytest.mark.parametrize(("build", "readers"), [("build_recs", ("evaluate_recs", "publish")), ("build_qa", ("evaluate_qa", "publish"))])
def test_a_malformed_candidate_xcom_fails_the_task_naming_the_build(dag, build, readers, xcom):
    """Rendering fails (so the task does, before bash runs), and the message names the build and why."""
    for task_id in readers:
        with pytest.raises(ValueError, match=re.escape(f"{build}: its XCom (the last line it printed) ") + ".*" + re.escape(MALFORMED_XCOMS[xcom])):
            render(dag, task_id, xcoms={**XCOMS, build: xcom})


def test_a_candidate_of_the_other_kind_fails_the_task(dag):
    swapped = {"build_recs": XCOMS["build_qa"], "build_qa": XCOMS["build_recs"]}
    with pytest.raises(ValueError, match=re.escape("build_recs: its XCom names the qa candidate 'qa-20260131T010204-3d4e5f', expected a recs candidate")):
        render(dag, "evaluate_recs", xcoms=swapped)
    with pytest.raises(ValueError, match="build_qa: its XCom names the recs candidate"):
        render(dag, "evaluate_qa", xcoms=swapped)


def test_a_candidate_line_with_surrounding_whitespace_is_accepted(dag):
    command = render(dag, "publish", xcoms={"build_recs": " candidate recs-20260131T010203-0a1b2c\r", "build_qa": XCOMS["build_qa"]}).command
    assert "--candidate recs-20260131T010203-0a1b2c --candidate qa-20260131T010204-3d4e5f" in command


@pytest.mark.parametrize(("params", "variables"), [({"recs_config": "/conf/{ds}/tuned recs*.json"}, {}),
                                                   ({}, {"recqa_recs_config": "/conf/{ds}/tuned recs*.json"})])
def test_recs_config_reaches_build_recs_as_one_config_word(dag, tmp_path, params, variables):
    assert run_in_bash(render(dag, "tune_recs", params=params, variables=variables), tmp_path).calls == []  # nothing to tune
    (argv,) = run_in_bash(render(dag, "build_recs", params=params, variables=variables), tmp_path).calls
    assert argv.count("--config") == 1
    assert argv[argv.index("--config") + 1] == "/conf/2026-01-31/tuned recs*.json"  # {ds} filled in; no split, no glob


def test_without_recs_config_tune_recs_tunes_and_build_recs_takes_its_output(dag, tmp_path):
    (tuned,) = run_in_bash(render(dag, "tune_recs"), tmp_path).calls
    out = str(tmp_path / "reports" / "2026-01-31" / "tuned-recs.json")
    assert tuned[:2] == ["tune", "recs"] and tuned[tuned.index("--out") + 1] == out and tuned[tuned.index("--trials") + 1] == "30"
    (argv,) = run_in_bash(render(dag, "build_recs"), tmp_path).calls
    assert argv.count("--config") == 1 and argv[argv.index("--config") + 1] == out
    (folder := tmp_path / "qa").mkdir()
    (argv,) = run_in_bash(render(dag, "build_qa", params={"recs_config": "/conf/tuned.json"}), folder).calls
    assert "--config" not in argv  # a recs setting only


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ("--factors 8 ; touch pwned", "';' is a shell operator"),
        ("--factors 8 | touch pwned", "'|' is a shell operator"),
        ("--factors 8 && touch pwned", "'&&' is a shell operator"),
        ("--factors 8 > pwned", "'>' is a shell operator"),
        ("--factors 8 & touch pwned", "'&' is a shell operator"),
        ("; touch pwned", "must start with a --flag, not ';'"),
        ("touch pwned", "must start with a --flag, not 'touch'"),
        ("-f 8", "must start with a --flag, not '-f'"),
        ("--map 'title=Item", "cannot split"),
        ("--map title\\", "cannot split"),
    ],
)
@pytest.mark.parametrize("setting", FLAG_TASKS)
def test_a_flag_setting_that_cannot_be_flags_fails_naming_the_setting(dag, setting, flags, reason):
    for task_id in FLAG_TASKS[setting]:
        with pytest.raises(ValueError, match=re.escape(f"{setting}: ") + ".*" + re.escape(reason)):
            render(dag, task_id, params={setting: flags})


def test_no_credentials_or_hosts_in_the_dag_source():
    source = (DAGS / "recqa_daily.py").read_text().lower()
    for secret in ("aws_secret_access_key", "aws_access_key_id", "password", "token", "http://", "https://"):
        assert secret not in source


def test_parsing_the_dag_imports_only_airflow_and_the_standard_library(airflow_home):
    script = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('apache_beam', 'torch', 'lancedb', 'lance', 'bentoml', 'sentence_transformers', 'pipelines', 'features') if m in sys.modules];"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", script, str(DAGS / "recqa_daily.py")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_await_service_keeps_the_workers_environment_so_a_service_token_reaches_recqa(dag, tmp_path):
    """RECQA_API_TOKEN comes from the worker's environment, never from a setting or the command line."""
    task = dag.get_task("await_service")
    assert task.append_env is True
    rendered = render(dag, "await_service", params={"service_url": "http://recqa.internal:3000"})
    assert "RECQA_API_TOKEN" not in rendered.env and "RECQA_API_TOKEN" not in rendered.command
    (argv,) = run_in_bash(rendered, tmp_path).calls
    assert argv == ["await-service", "--warehouse", str(tmp_path / "wh"), "--service-url", "http://recqa.internal:3000"]
