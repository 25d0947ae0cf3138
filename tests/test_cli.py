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


@pytest.mark.parametrize("command", ["build-recs", "build-qa", "serve", "publish", "await-service"])
def test_every_command_has_help_with_warehouse(command):
    result = _recqa(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--warehouse" in result.stdout


def test_unknown_command_fails_with_usage():
    result = _recqa("train-everything")
    assert result.returncode == 2
    assert "unknown command 'train-everything'" in result.stderr


def test_missing_input_fails_with_the_path(tmp_path):
    result = _recqa("build-qa", "--warehouse", str(tmp_path), "--documents", str(tmp_path / "none.json"))
    assert result.returncode == 1
    assert "none.json' matches no file" in result.stderr
