"""`airflow dags test recqa_daily <date>` for real: Airflow with SQLite, the recqa CLI, the bundled data.

One AIRFLOW_HOME and one warehouse serve both runs: a passing interval publishes, then an
interval whose gate is impossibly high fails and leaves the current release where it was.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import lance_io
from tests.airflow_dags.conftest import DAGS
from tests.conftest import MS_USAGE, STACKFAQ
from registry.log import published_version

pytestmark = pytest.mark.slow

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
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
    return {name: published_version(str(warehouse), name) for name in TABLES}


def latest(warehouse: Path) -> dict[str, int]:
    return lance_io.table_versions(str(warehouse), list(TABLES))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    root = tmp_path_factory.mktemp("recqa-airflow")
    for day in (GOOD_DAY, BAD_DAY):  # the bundled events laid out as daily partitions
        (root / "events" / f"dt={day}").mkdir(parents=True)
        shutil.copy(MS_USAGE, root / "events" / f"dt={day}" / "usage.csv")
    airflow = Airflow(root)
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
        ["validate_inputs", "build_recs", "build_qa", "evaluate_recs", "evaluate_qa", "publish", "await_service"], "success"
    )
    assert published(airflow.warehouse) == latest(airflow.warehouse)  # every table's new version is the published one
    for kind in ("recs", "qa"):
        report = json.loads((airflow.reports / GOOD_DAY / kind / "report.json").read_text())
        assert report["gates"]["passed"] is True
        assert (airflow.reports / GOOD_DAY / kind / "report.html").exists()
    recs = json.loads((airflow.reports / GOOD_DAY / "recs" / "report.json").read_text())
    assert recs["gates"]["must_beat"] == ["popularity"]
    assert any(f"dt={GOOD_DAY}" in path for path in recs["dataset"]["files"])  # the interval's partition was read


def test_a_failing_gate_fails_the_run_and_publishes_nothing(airflow, good_run):
    before = published(airflow.warehouse)
    assert all(version is not None for version in before.values())
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
    assert any("minimum 1.0100" in failure for failure in report["gates"]["failures"])
