"""The `recqa` console script: help for every subcommand, clear errors.

Argument and input errors are checked in this process (`_in_process`: what `main` prints and
returns, without a new interpreter's second of start-up per test); what only a real process
shows (import-time noise on stderr, library warnings, a traceback, Ctrl-C) runs the console
script (`_recqa`).
"""

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

RECQA = str(Path(sys.executable).with_name("recqa"))


def _recqa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RECQA, *args], capture_output=True, text=True, timeout=120)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _in_process(*args: str, cwd: Path | None = None) -> Ran:
    """`recqa ARGS` through `cli.main.main` here: its exit code (argparse's SystemExit included)
    and what it printed; the working folder and environment are put back after."""
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    folder, environment = os.getcwd(), dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)
    return Ran(code, out.getvalue(), err.getvalue())


def test_top_level_help_lists_the_commands():
    result = _recqa("--help")
    assert result.returncode == 0
    for command in ("build-recs", "build-qa", "serve"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["build-recs", "build-qa", "serve", "publish", "await-service", "candidates", "releases"])
def test_every_command_has_help_with_warehouse(command):
    result = _in_process(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--warehouse" in result.stdout


def test_unknown_command_fails_with_usage():
    result = _in_process("train-everything")
    assert result.returncode == 2
    assert "unknown command 'train-everything'" in result.stderr


def test_tune_needs_a_kind_and_names_an_unknown_flag(tmp_path):
    result = _in_process("tune")
    assert result.returncode == 2 and "recqa tune <kind>" in result.stdout
    result = _in_process("tune", "recs", "--out", str(tmp_path / "tuned.json"), "--fctors", "3")
    assert result.returncode == 1 and "unknown flag --fctors (did you mean --factors?)" in result.stderr
    assert not (tmp_path / "tuned.json").exists()


def test_missing_input_fails_with_the_path(tmp_path):
    result = _in_process("build-qa", "--warehouse", str(tmp_path), "--documents", str(tmp_path / "none.json"))
    assert result.returncode == 1
    assert "none.json' matches no file" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["build-recs", "--warehouse", "http://host/wh"],
        ["build-qa", "--warehouse", "ftp://host/wh"],
        ["validate", "qa", "--warehouse", "hdfs://nn/wh"],
        ["publish", "--warehouse", "s4://bucket"],
        ["rollback", "--warehouse", "http://host/wh"],
        ["await-service", "--warehouse", "http://host/wh"],
        ["evaluate", "qa", "--warehouse", "http://host/wh"],
        ["serve", "--warehouse", "http://host/wh"],
    ],
)
def test_an_unsupported_warehouse_scheme_fails_before_any_work(argv, tmp_path):
    result = _in_process(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "argument --warehouse: unsupported scheme" in result.stderr
    assert "s3://" in result.stderr and "local path" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a rejects folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "qa", "--beir", "no-such-folder"], "argument --beir: no such folder: 'no-such-folder'"),
        (["evaluate", "qa", "--stackfaq", "none.json"], "argument --stackfaq: no such file: 'none.json'"),
    ],
)
def test_missing_local_inputs_of_evaluate_are_named(argv, message, tmp_path):
    result = _in_process(*argv, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_evaluate_recs_reads_its_inputs_as_the_build_does_and_names_a_missing_one(tmp_path):
    result = _in_process("evaluate", "recs", "--interactions", "none.csv", cwd=tmp_path)
    assert result.returncode == 1 and "interactions input 'none.csv' matches no file" in result.stderr, result.stderr


def test_validate_names_a_missing_input(tmp_path):
    result = _in_process("validate", "recs", "--warehouse", str(tmp_path), "--interactions", str(tmp_path / "none.csv"))
    assert result.returncode == 1
    assert "none.csv' matches no file" in result.stderr


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    result = _in_process("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"recqa {version('recqa')}"


def test_serve_help_shows_the_defaults():
    from cli.main import DEFAULT_HOST, DEFAULT_PORT
    from features.schemas import DEFAULT_MODEL_NAME

    help_text = " ".join(_in_process("serve", "--help").stdout.split())
    assert f"(default {DEFAULT_HOST})" in help_text and f"(default {DEFAULT_PORT})" in help_text
    assert f"$RECQA_MODEL if set, else {DEFAULT_MODEL_NAME})" in help_text


@pytest.mark.parametrize("argv", [["--help"], ["build-recs", "--help"], ["build-qa", "--help"], ["evaluate", "recs", "--help"], ["tune", "qa", "--help"]])
def test_help_prints_nothing_on_stderr(argv):
    result = _recqa(*argv)
    assert result.returncode == 0 and result.stdout
    assert result.stderr == ""  # e.g. Beam's "apitools not found" on importing its GCP clients


def _tiny_recs(tmp_path) -> list[str]:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{(3 * u + j) % 12},{1_600_000_000 + 60 * j}\n" for u in range(30) for j in range(4)))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item number {i}\n" for i in range(12)))
    return ["--interactions", str(events), "--items", str(items), "--input-format", "contract"]


def test_fitting_als_and_the_implicit_baselines_prints_no_library_warnings(tmp_path):
    # evaluate recs fits ALS as built and implicit's item-kNN and BPR, whose fits warn about CSR input and BLAS threads
    result = subprocess.run([RECQA, "evaluate", "recs", "--warehouse", str(tmp_path / "wh"), "--out", str(tmp_path / "report"),
                             *_tiny_recs(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "Method expects CSR input" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert "item_knn" in result.stdout and "bpr" in result.stdout  # the baselines did run


def test_a_step_error_is_printed_once_without_a_traceback_and_with_a_hint(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\nu1,i1,30.11.2026 10:15\nu2,i1,1600000000\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Item one\n")
    result = _recqa("build-recs", "--warehouse", str(tmp_path / "wh"), "--interactions", str(events), "--items", str(items),
                    "--input-format", "contract")
    assert result.returncode == 1
    assert result.stderr.count("cannot parse timestamp '30.11.2026 10:15'") == 1, result.stderr
    assert "Traceback" not in result.stderr and "while running" not in result.stderr
    assert "--timestamp-format" in result.stderr and "--max-reject-fraction" in result.stderr
    assert str(tmp_path / "wh" / "_rejects") in result.stderr


_SLOW_ENCODER_RUN = """
import sys, time
from pathlib import Path
import numpy as np
from pipelines.transforms import encode

class SlowEncoder:
    def __init__(self, name):
        self.name = name
    def load(self):
        return self
    def encode(self, texts):
        Path(sys.argv[1]).touch()  # encoding has started
        time.sleep(0.5)
        return np.ones((len(texts), 384), dtype=np.float32) / np.sqrt(384)

encode.SentenceTransformerEncoder = SlowEncoder
from cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _documents(tmp_path, count: int):
    import json

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"doc_id": f"d{i}", "question": f"How do I fix {i}?", "answer": f"Restart thing {i}."}) + "\n"
                            for i in range(count)))
    return path


@pytest.mark.slow  # a real process interrupted mid-run
def test_ctrl_c_stops_a_build_at_once_saying_nothing_was_published(tmp_path, monkeypatch):
    import signal
    import time

    from pipelines import build_qa, publish
    from pipelines.transforms import encode
    from registry.log import read_releases
    from tests.conftest import FakeEncoder

    class Loaded(FakeEncoder):
        def __init__(self, name):
            super().__init__()

        def load(self):
            return self

    warehouse = str(tmp_path / "wh")
    monkeypatch.setattr(encode, "SentenceTransformerEncoder", Loaded)
    built = build_qa.run(["--warehouse", warehouse, "--documents", str(_documents(tmp_path, 5)), "--input-format", "contract"])
    publish.run(["--warehouse", warehouse, "--candidate", built.candidate, "--force"])
    before = read_releases(warehouse)

    started_marker = tmp_path / "encoding"
    argv = ["build-qa", "--warehouse", warehouse, "--documents", str(_documents(tmp_path, 3000)), "--input-format", "contract"]
    child = subprocess.Popen([sys.executable, "-c", _SLOW_ENCODER_RUN, str(started_marker), *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started_marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started_marker.exists(), child.communicate()
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = child.communicate(timeout=30)
    assert time.monotonic() - sent < 4, stderr
    assert child.returncode == 130
    assert stderr.strip().splitlines()[-1] == "recqa build-qa: interrupted; nothing was published (the release is unchanged)"
    assert "Traceback" not in stderr and "candidate" not in stdout
    after = read_releases(warehouse)
    assert (after.releases, after.version) == (before.releases, before.version)


def test_evaluate_qa_on_a_warehouse_without_answers_says_how_to_make_them(tmp_path):
    stackfaq = Path(__file__).resolve().parents[1] / "data" / "stackfaq" / "stackExchange-FAQ.json"
    result = _in_process("evaluate", "qa", "--warehouse", str(tmp_path), "--stackfaq", str(stackfaq))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"recqa evaluate qa: field '--warehouse': no answers table in '{tmp_path}': "
                                     f"build one with `recqa build-qa --warehouse {tmp_path}`, or name the warehouse that has it")


@pytest.mark.slow  # a real process interrupted mid-run
def test_ctrl_c_during_tuning_ends_it_at_once_and_writes_no_result(tmp_path):
    import signal
    import time

    out = tmp_path / "tuned.json"
    child = subprocess.Popen([RECQA, "tune", "recs", "--out", str(out), "--trials", "100000", *_tiny_recs(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = child.stderr.readline()  # the first trial's line: the search is under way
    assert first.startswith("trial 1/100000:"), first + child.stderr.read()
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = child.communicate(timeout=30)
    assert time.monotonic() - sent < 4 and child.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "recqa tune recs: interrupted; nothing was published (the release is unchanged)"
    assert "Traceback" not in stderr and stdout == "" and not out.exists()


@pytest.mark.parametrize("command", ["publish", "tune"])
def test_an_interrupt_a_library_turns_into_an_error_of_any_type_still_ends_as_an_interrupt(tmp_path, command):
    # where Ctrl-C lands decides what the main thread sees: a library's `except`/`finally` may
    # raise its own error (an OSError, a TypeError) in place of the KeyboardInterrupt
    (tmp_path / "interrupted_job.py").write_text(
        "import signal\n"
        "def run(argv):\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "    except KeyboardInterrupt:\n"
        "        raise TypeError('a pool torn down mid-call')\n")
    script = ("import sys, cli.main as m\n"
              "m.JOBS['publish'] = ('interrupted_job', 'run', '')\n"
              "m.TUNINGS['recs'] = ('interrupted_job', '')\n"
              f"sys.exit(m.main([{command!r}] + ([] if {command!r} == 'publish' else ['recs'])))\n")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[1])])})
    assert child.returncode == 130, child.stderr
    assert "Traceback" not in child.stderr and "interrupted;" in child.stderr.strip().splitlines()[-1], child.stderr


def test_a_command_run_in_process_leaves_the_interrupt_handling_as_it_found_it():
    import signal
    import threading

    from cli.main import main
    from tests.conftest import STACKFAQ

    before = signal.getsignal(signal.SIGINT)
    assert main(["validate", "qa", "--documents", str(STACKFAQ)]) == 0
    assert signal.getsignal(signal.SIGINT) is before
    threading.Event().wait(0.2)
    assert not any(t.name == "recqa-interrupt" for t in threading.enumerate())


def test_a_typo_in_a_build_flag_fails_at_once_with_one_line_naming_the_fix(tmp_path):
    result = _in_process("build-recs", "--halflife-days", "30", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("recqa ")]
    assert errors == ["recqa build-recs: unknown flag --halflife-days (did you mean --half-life-days?); "
                      "`recqa build-recs --help` lists the flags"]
    assert list(tmp_path.iterdir()) == []  # no warehouse, no rejects folder
