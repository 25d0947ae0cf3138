"""The `recqa` console script: help for every subcommand, clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

RECQA = str(Path(sys.executable).with_name("recqa"))


def _recqa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RECQA, *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_the_commands():
    result = _recqa("--help")
    assert result.returncode == 0
    for command in ("build-recs", "build-qa", "serve"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["build-recs", "build-qa", "serve", "publish", "await-service", "candidates", "releases"])
def test_every_command_has_help_with_warehouse(command):
    result = _recqa(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--warehouse" in result.stdout


def test_unknown_command_fails_with_usage():
    result = _recqa("train-everything")
    assert result.returncode == 2
    assert "unknown command 'train-everything'" in result.stderr


def test_tune_needs_a_kind_and_names_an_unknown_flag(tmp_path):
    result = _recqa("tune")
    assert result.returncode == 2 and "recqa tune <kind>" in result.stdout
    result = _recqa("tune", "recs", "--out", str(tmp_path / "tuned.json"), "--fctors", "3")
    assert result.returncode == 1 and "unknown flag --fctors (did you mean --factors?)" in result.stderr
    assert not (tmp_path / "tuned.json").exists()


def test_missing_input_fails_with_the_path(tmp_path):
    result = _recqa("build-qa", "--warehouse", str(tmp_path), "--documents", str(tmp_path / "none.json"))
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
    result = subprocess.run([RECQA, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
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
    result = subprocess.run([RECQA, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_evaluate_recs_reads_its_inputs_as_the_build_does_and_names_a_missing_one(tmp_path):
    result = subprocess.run([RECQA, "evaluate", "recs", "--interactions", "none.csv"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and "interactions input 'none.csv' matches no file" in result.stderr, result.stderr


def test_validate_names_a_missing_input(tmp_path):
    result = _recqa("validate", "recs", "--warehouse", str(tmp_path), "--interactions", str(tmp_path / "none.csv"))
    assert result.returncode == 1
    assert "none.csv' matches no file" in result.stderr


def test_a_typo_in_a_build_flag_fails_at_once_with_one_line_naming_the_fix(tmp_path):
    result = subprocess.run([RECQA, "build-recs", "--halflife-days", "30"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("recqa ")]
    assert errors == ["recqa build-recs: unknown flag --halflife-days (did you mean --half-life-days?); "
                      "`recqa build-recs --help` lists the flags"]
    assert list(tmp_path.iterdir()) == []  # no warehouse, no rejects folder
