"""`airflow dags test recqa_daily <date>` for real: Airflow with SQLite, the recqa CLI, the bundled data.

One AIRFLOW_HOME and one warehouse serve both runs, with an ALS configuration tuned once
(`recqa tune recs`, given as the `recs_config` setting; `make run` tunes before it builds too:
the untuned defaults do not beat popularity on the bundled data). A passing interval
publishes exactly the candidates its evaluate tasks judged, then an interval whose gate is
impossibly high fails and leaves the current release where it was. A second AIRFLOW_HOME runs
the DAG with a stub recqa: the candidate ids travel build -> XCom -> evaluate -> publish in
real Airflow, and a malformed one fails the task that reads it.
"""

from __future__ import annotations

import json
import os
import re
import hashlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from features.candidates import Candidate
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import lance_io
from registry.log import published_tags, read_candidates, read_releases
from tests.airflow_dags.conftest import DAGS
from tests.conftest import MS_CATALOG, MS_USAGE, STACKFAQ

pytestmark = pytest.mark.slow

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
RECQA = str(Path(sys.executable).with_name("recqa"))  # the DAG's default recqa
TUNE_TRIALS = 30  # as `make run`; the search is seeded
TABLES = (USERS_TABLE, ITEMS_TABLE, ANSWERS_TABLE)
GOOD_DAY, BAD_DAY = "2015-06-10", "2015-06-11"
# Fewer judged queries and no ANN figures keep evaluate_qa to ~30 s; the gates are the same.
QA_EVALUATE_FLAGS = f"--stackfaq {shlex.quote(str(STACKFAQ))} --max-queries 100 --ann-queries 0"
TIMEOUT_SECONDS = 900


class Airflow:
    """The airflow CLI of this environment against a temp AIRFLOW_HOME; settings as Variables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warehouse = root / "warehouse"
        self.reports = root / "reports"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Variables from the environment: what a deployment would set in the UI or a secrets backend
            "AIRFLOW_VAR_RECQA_WAREHOUSE": str(self.warehouse),
            "AIRFLOW_VAR_RECQA_REPORTS": str(self.reports),
            "AIRFLOW_VAR_RECQA_INTERACTIONS": str(root / "events" / "dt={ds}" / "usage.csv"),
            "AIRFLOW_VAR_RECQA_QA_EVALUATE_FLAGS": QA_EVALUATE_FLAGS,
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        if check and result.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def _json(self, *args: str) -> list[dict]:
        out = self(*args, "-o", "json").stdout
        return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("[")))

    def run(self, day: str, conf: dict | None = None) -> SimpleNamespace:
        """`airflow dags test` one interval; its run's state and every task's state."""
        result = self("dags", "test", "recqa_daily", day, *(["--conf", json.dumps(conf)] if conf else []), check=False)
        (run,) = [r for r in self._json("dags", "list-runs", "recqa_daily") if r["logical_date"].startswith(day)]
        tasks = {t["task_id"]: t["state"] for t in self._json("tasks", "states-for-dag-run", "recqa_daily", run["run_id"])}
        return SimpleNamespace(result=result, state=run["state"], tasks=tasks)


def published(warehouse: Path) -> dict[str, int | None]:
    """The version each table's `published` tag names (publish moves them to the release)."""
    tags = published_tags(str(warehouse))
    return {name: tags.get(name) for name in TABLES}


def latest(warehouse: Path) -> dict[str, int]:
    return lance_io.table_versions(str(warehouse), list(TABLES))


def judged(warehouse: Path) -> dict[str, Candidate]:
    """The candidates an evaluation judged, by id (the evaluate tasks record their verdicts in them)."""
    return {c.id: c for c in read_candidates(str(warehouse)) if c.evaluation is not None}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    root = tmp_path_factory.mktemp("recqa-airflow")
    for day in (GOOD_DAY, BAD_DAY):  # the bundled events laid out as daily partitions
        (root / "events" / f"dt={day}").mkdir(parents=True)
        shutil.copy(MS_USAGE, root / "events" / f"dt={day}" / "usage.csv")
    airflow = Airflow(root)
    tuned = root / "tuned-recs.json"
    tune = [RECQA, "tune", "recs", "--out", str(tuned), "--trials", str(TUNE_TRIALS),
            "--input-format", "ms-store", "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)]
    result = subprocess.run(tune, env=airflow.env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    airflow.env["AIRFLOW_VAR_RECQA_RECS_CONFIG"] = str(tuned)
    airflow("db", "migrate")
    airflow("dags", "reserialize")
    return airflow


@pytest.fixture(scope="module")
def good_run(airflow: Airflow) -> SimpleNamespace:
    assert not airflow.warehouse.exists()
    return airflow.run(GOOD_DAY)


def test_a_daily_run_succeeds_publishes_and_writes_reports(airflow, good_run):
    assert good_run.result.returncode == 0, good_run.result.stderr[-3000:]
    assert good_run.state == "success"
    assert good_run.tasks == dict.fromkeys(
        ["validate_inputs", "tune_recs", "build_recs", "build_qa", "evaluate_recs", "evaluate_qa", "publish", "await_service"], "success"
    )
    assert published(airflow.warehouse) == latest(airflow.warehouse)  # every table's new version is the published one
    for kind in ("recs", "qa"):
        report = json.loads((airflow.reports / GOOD_DAY / kind / "report.json").read_text())
        assert report["gates"]["passed"] is True, report["gates"]
        assert (airflow.reports / GOOD_DAY / kind / "report.html").exists()
    recs = json.loads((airflow.reports / GOOD_DAY / "recs" / "report.json").read_text())
    assert [gate["name"] for gate in recs["gates"]["gates"]] == ["must-beat popularity"]
    # the interval's partition was read, by evaluate too: it takes the inputs from the candidate
    assert any(f"dt={GOOD_DAY}" in path for path in recs["dataset"]["files"])


def test_the_release_names_exactly_the_candidates_the_evaluate_tasks_judged(airflow, good_run):
    assert good_run.state == "success", good_run.result.stderr[-3000:]
    candidates = judged(airflow.warehouse)  # a fresh warehouse: only this run's evaluations
    assert sorted(c.kind for c in candidates.values()) == ["qa", "recs"]
    assert all(c.evaluation.passed for c in candidates.values())
    (recs,) = [c for c in candidates.values() if c.kind == "recs"]
    (qa,) = [c for c in candidates.values() if c.kind == "qa"]
    assert set(recs.tables) == {USERS_TABLE, ITEMS_TABLE} and set(qa.tables) == {ANSWERS_TABLE}
    assert read_releases(str(airflow.warehouse)).current.tables == {**recs.tables, **qa.tables}
    for candidate in (recs, qa):  # judged by this run's evaluate tasks: their reports name them
        report = airflow.reports / GOOD_DAY / candidate.kind / candidate.id / "report.json"  # the copy no later run overwrites
        assert Path(candidate.evaluation.report).resolve() == report.resolve()
        assert json.loads(report.read_text())["candidate"]["id"] == candidate.id
        assert hashlib.sha256(report.read_bytes()).hexdigest() == candidate.evaluation.report_sha256
        assert report.read_bytes() == (airflow.reports / GOOD_DAY / candidate.kind / "report.json").read_bytes()
    tuned = json.loads(Path(airflow.env["AIRFLOW_VAR_RECQA_RECS_CONFIG"]).read_text())["config"]
    assert recs.config["als"]["factors"] == tuned["factors"]  # recs_config reached build-recs


def test_a_failing_gate_fails_the_run_and_publishes_nothing(airflow, good_run):
    before = published(airflow.warehouse)
    assert all(version is not None for version in before.values())
    release_before, judged_before = read_releases(str(airflow.warehouse)).current, judged(airflow.warehouse)
    small = airflow.root / "stackfaq-small.json"  # a smaller QA input keeps this run short; the gate is on recs
    small.write_text(json.dumps({"root": {"qapair": json.loads(STACKFAQ.read_text())["root"]["qapair"][:20]}}))
    conf = {
        "recs_evaluate_flags": "--must-beat popularity --min-ndcg 1.01",
        "documents": str(small),
        "qa_evaluate_flags": f"--stackfaq {shlex.quote(str(small))} --ann-queries 0",
    }
    bad = airflow.run(BAD_DAY, conf)
    assert bad.state == "failed"
    assert bad.tasks["evaluate_recs"] == "failed"
    assert bad.tasks["build_recs"] == bad.tasks["build_qa"] == bad.tasks["evaluate_qa"] == "success"
    assert bad.tasks["publish"] == bad.tasks["await_service"] == "upstream_failed"
    after_latest = latest(airflow.warehouse)
    assert all(after_latest[name] > before[name] for name in TABLES)  # the builds did write new versions...
    assert published(airflow.warehouse) == before  # ...but the release did not change
    report = json.loads((airflow.reports / BAD_DAY / "recs" / "report.json").read_text())
    assert report["gates"]["passed"] is False
    assert {(gate["name"], gate["threshold"], gate["passed"]) for gate in report["gates"]["gates"]} >= {("min-ndcg", 1.01, False)}
    # this run's candidates were judged, the recs one failed, and the release names neither
    new = {id_: c for id_, c in judged(airflow.warehouse).items() if id_ not in judged_before}
    assert sorted((c.kind, c.evaluation.passed) for c in new.values()) == [("qa", True), ("recs", False)]
    assert read_releases(str(airflow.warehouse)).current == release_before
    for candidate in new.values():
        assert all(release_before.tables[name] != version for name, version in candidate.tables.items())


# The stub recqa: logs its argv to $STUB_CALLS; a build prints `candidate <ID>` with a random id
# and then logs to stderr. The malformed one's build-recs prints after its candidate line what a
# recqa without candidates prints last (a summary table row).
STUB_RECQA = """#!{python}
import json, os, secrets, sys, time
with open(os.environ["STUB_CALLS"], "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
kind = {{"build-recs": "recs", "build-qa": "qa"}}.get(sys.argv[1])
if kind:
    print(f"candidate {{kind}}-{{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}}-{{secrets.token_hex(3)}}", flush=True)
    if {malformed} and kind == "recs":
        print("| users | 9 | 0 | 0 | 9 | 1.2 |", flush=True)
    print("INFO a log line after the candidate", file=sys.stderr, flush=True)
"""
CANDIDATE_ID = re.compile(r"(recs|qa)-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}")


@pytest.fixture(scope="module")
def stub_airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    root = tmp_path_factory.mktemp("recqa-airflow-stub")
    airflow = Airflow(root)
    airflow.env["STUB_CALLS"] = str(root / "calls.jsonl")
    for name, malformed in (("recqa-stub", False), ("recqa-stub-malformed", True)):
        (root / name).write_text(STUB_RECQA.format(python=sys.executable, malformed=malformed))
        (root / name).chmod(0o755)
    airflow("db", "migrate")
    airflow("dags", "reserialize")
    return airflow


def stub_run(airflow: Airflow, day: str, stub: str) -> tuple[SimpleNamespace, dict[str, list[str]]]:
    """One interval run with the stub as recqa; the run, and the argv of each recqa call by subcommand."""
    calls_file = Path(airflow.env["STUB_CALLS"])
    calls_file.unlink(missing_ok=True)
    run = airflow.run(day, {"recqa": str(airflow.root / stub)})
    calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
    return run, {" ".join(argv[:2]) if argv[0] in ("evaluate", "validate") else argv[0]: argv for argv in calls}


def test_real_airflow_passes_each_build_candidate_to_its_evaluate_and_both_to_publish(stub_airflow):
    run, calls = stub_run(stub_airflow, GOOD_DAY, "recqa-stub")
    assert run.state == "success", run.result.stdout[-3000:]
    recs_id, qa_id = (argv[argv.index("--candidate") + 1] for argv in (calls["evaluate recs"], calls["evaluate qa"]))
    assert CANDIDATE_ID.fullmatch(recs_id) and recs_id.startswith("recs-") and CANDIDATE_ID.fullmatch(qa_id) and qa_id.startswith("qa-")
    assert calls["evaluate recs"].count("--candidate") == calls["evaluate qa"].count("--candidate") == 1
    assert calls["publish"][-4:] == ["--candidate", recs_id, "--candidate", qa_id]
    assert calls["publish"].count("--candidate") == 2
    for build, candidate in (("build_recs", recs_id), ("build_qa", qa_id)):
        assert f"candidate {candidate}" in run.result.stdout, build  # printed by that build


def test_real_airflow_fails_the_tasks_reading_a_malformed_candidate_and_never_publishes(stub_airflow):
    run, calls = stub_run(stub_airflow, BAD_DAY, "recqa-stub-malformed")
    assert run.state == "failed"
    assert run.tasks["build_recs"] == run.tasks["build_qa"] == run.tasks["evaluate_qa"] == "success"
    assert run.tasks["evaluate_recs"] == "failed"
    assert run.tasks["publish"] == run.tasks["await_service"] == "upstream_failed"
    assert "evaluate recs" not in calls and "publish" not in calls  # failed while rendering, before bash ran
    assert "build_recs: its XCom (the last line it printed) is '| users | 9 | 0 | 0 | 9 | 1.2 |', not 'candidate <ID>'" in run.result.stdout
