"""A busy port fails `make run` and `recqa serve` at once, in one line naming the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.ports import next_free_port, port_problem

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on (on loopback) for the test's duration."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_listening_port_is_reported_in_use_and_a_free_one_is_not(busy_port):
    assert "already in use" in port_problem("127.0.0.1", busy_port)
    assert port_problem("127.0.0.1", _free_port()) is None


def test_the_suggested_port_is_free(busy_port):
    suggested = next_free_port("127.0.0.1", busy_port)
    assert suggested is not None and suggested != busy_port
    assert port_problem("127.0.0.1", suggested) is None


def test_a_port_out_of_range_is_named():
    assert "not a TCP port" in port_problem("127.0.0.1", 70000)


def test_make_run_on_a_busy_port_fails_before_installing_or_building(busy_port, tmp_path):
    venv = tmp_path / "venv"
    started = time.monotonic()
    done = subprocess.run(["make", "-C", str(PROJECT), "run", f"PORT={busy_port}", f"VENV={venv}", f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    assert f"port {busy_port} on 127.0.0.1 is already in use" in done.stderr
    assert "make run PORT=" in done.stderr
    assert not venv.exists()  # nothing installed, so nothing built either


def test_recqa_serve_on_a_busy_port_fails_in_one_line_before_starting_bentoml(busy_port, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--warehouse", str(tmp_path), "--port", str(busy_port)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=PROJECT)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {busy_port} on 127.0.0.1 is already in use" in lines[0] and "--port" in lines[0]


@pytest.mark.parametrize("variable, value", [("RECQA_CACHE_CAPACITY", "abc"), ("RECQA_MAX_BODY_BYTES", "-5"), ("RECQA_WORKERS", "0")])
def test_recqa_serve_with_a_bad_variable_fails_in_one_line_naming_it_before_starting_bentoml(tmp_path, variable, value):
    env = {**os.environ, "PYTHONPATH": str(PROJECT), variable: value}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--warehouse", str(tmp_path), "--port", str(next_free_port("127.0.0.1", 20000))],
                          capture_output=True, text=True, timeout=60, env=env, cwd=PROJECT)
    assert done.returncode == 1 and time.monotonic() - started < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("recqa serve: ") and variable in lines[0] and value in lines[0]
