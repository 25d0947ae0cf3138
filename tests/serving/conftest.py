"""The service under test: a real `recqa serve` process on a free loopback port, or in-process
through its ASGI app."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from starlette.testclient import TestClient

STARTUP_TIMEOUT_SECONDS = 180


def histogram(metrics: str, name: str, label: str = "") -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram in /metrics text, over its series holding `label`
    (all of them by default), across workers."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in metrics.splitlines():
        for part in totals:
            if line.startswith((f"{name}_{part} ", f"{name}_{part}{{")) and label in line:
                totals[part] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, base_url: str, process: subprocess.Popen, log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def post(self, route: str, body: dict) -> requests.Response:
        return requests.post(f"{self.base_url}{route}", json=body, timeout=30)

    def get(self, route: str) -> requests.Response:
        return requests.get(f"{self.base_url}{route}", timeout=30)


def start_server(
    warehouse: Path, tmp_path: Path, wait_ready: bool = True, reload_seconds: float = 10.0, env: dict[str, str] | None = None
) -> Server:
    """Start the service through the CLI and wait until it answers (/readyz 200 unless told not to); `env` adds variables."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "RECQA_RELOAD_SECONDS": str(reload_seconds),
        **(env or {}),
    }
    recqa = str(Path(sys.executable).with_name("recqa"))
    process = subprocess.Popen(
        [recqa, "serve", "--warehouse", str(warehouse), "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            status = requests.get(f"{base_url}/readyz", timeout=2).status_code
            if status == 200 or (not wait_ready and status == 503):
                return Server(base_url, process, log)
        except requests.RequestException:  # not listening yet, or busy starting
            pass
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_SECONDS}s:\n{log.read_text()[-4000:]}")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def server(warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    running = start_server(warehouse, tmp_path_factory.mktemp("server"), env={"RECQA_ACCESS_LOG": "1"})  # its line is tested
    yield running
    stop_server(running.process)


@pytest.fixture(scope="session")
def service_app(tmp_path_factory: pytest.TempPathFactory):
    """The RecQA ASGI app, made once per test process (BentoML registers its request metrics
    when the app is made, and Prometheus refuses a second registration); each `in_process`
    client starts a new service instance in it, reading the environment as `recqa serve` would."""
    from serving.service import RecQA

    with pytest.MonkeyPatch.context() as patch:
        # In-process, BentoML's /metrics reads the multiprocess directory `bentoml serve` would
        # make; BentoML's own pytest plugin sets it for the session the same way.
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        yield RecQA.to_asgi()


@contextlib.contextmanager
def in_process(app, warehouse: Path, reload_seconds: float = 10.0, env: dict[str, str] | None = None) -> Iterator[TestClient]:
    """A client of a service instance started in this process over `warehouse` (lifespan run);
    `env` adds variables (tokens), which are otherwise unset.

    Questions are encoded with the real model through PyTorch: no ONNX export at each start.
    """
    variables = {
        "RECQA_WAREHOUSE": str(warehouse),
        "RECQA_RELOAD_SECONDS": str(reload_seconds),
        "RECQA_ENCODER_BACKEND": "torch",
        **(env or {}),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("RECQA_API_TOKEN", "RECQA_ADMIN_TOKEN", "RECQA_INGEST_TOKEN"):
            patch.delenv(name, raising=False)
        for name, value in variables.items():
            patch.setenv(name, value)
        with TestClient(app) as client:
            yield client


class InProcessServer:
    """The `Server` calls (`post(route, body)`, `get(route)`) over an in-process client, so a
    contract test reads the same against either."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def post(self, route: str, body: dict):
        return self.client.post(route, json=body)

    def get(self, route: str):
        return self.client.get(route)
