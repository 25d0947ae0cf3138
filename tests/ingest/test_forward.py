"""The service's side of the write API: IngestProcess's routes in front of a real
`python -m ingest.process` (its model loaded through PyTorch, not exported), over a warehouse
in tmp_path with no release (nothing to embed ahead: only the change log is written)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ingest.forward import IngestProcess
from ingest.routes import COMMIT_HEADER
from registry.log import read_changes
from tests.ingest.test_process import thread_niceness

pytestmark = pytest.mark.slow  # each start loads the model in a new process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def torch_backend(monkeypatch):
    monkeypatch.setenv("RECQA_ENCODER_BACKEND", "torch")  # read by the ingest process, as the service's settings
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _stops(process: psutil.Process, seconds: float = 30.0) -> bool:
    """Whether `process` exits within `seconds` (a zombie not yet reaped counts as exited)."""
    deadline = time.monotonic() + seconds
    try:
        while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    except psutil.NoSuchProcess:  # reaped between the two questions
        pass
    return True


def _items(prefix: str, n: int) -> dict:
    return {"items": [{"item_id": f"{prefix}-{i}", "title": f"title {prefix} {i}"} for i in range(n)]}


def test_writes_are_forwarded_to_the_ingest_process_which_is_started_again_after_it_dies(tmp_path, torch_backend, monkeypatch):
    monkeypatch.setenv("RECQA_INGEST_NICE", "7")
    warehouse = tmp_path / "warehouse"
    ingest = IngestProcess(lambda: str(warehouse))
    seen = []
    ingest.on_commit = seen.append
    with TestClient(Starlette(routes=ingest.routes())) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: client.post("/ingest/items", json=_items(f"a{n}", 3)), range(8)))
        assert [a.status_code for a in answers] == [200] * 8, answers[0].text
        assert all(COMMIT_HEADER not in a.headers for a in answers)  # the service's metrics' header stays inside
        versions = {a.json()["version"] for a in answers}
        # each commit's timings observed once, from the first of its answers
        assert len(seen) == len(versions) and sum(t.records for t in seen) == 24

        bad = client.post("/ingest/items", json={"items": [{"title": "no id"}]})
        assert bad.status_code == 422 and bad.json()["rejected"][0]["field"] == "item_id"  # the ingest process's own answer

        first = ingest._process
        # the reads first when both want the cores: every thread of the writes' process (the model's included) runs 7 lower
        assert set(thread_niceness(first.pid)) == {min(19, os.nice(0) + 7)}
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        again = client.post("/ingest/items", json=_items("b", 2))
        assert again.status_code == 200, again.text
        assert ingest._process is not first and ingest._process.poll() is None
    keys = sorted(c.key for c in read_changes(str(warehouse)).changes)
    assert keys == sorted([f"a{n}-{i}" for n in range(8) for i in range(3)] + ["b-0", "b-1"])
    process, socket = ingest._process, ingest.socket
    ingest.close()
    assert process.poll() is not None and not os.path.exists(socket)  # stopped, its socket removed


def test_the_workers_of_one_server_share_one_writer_and_another_takes_over_when_it_stops(tmp_path, torch_backend):
    """Two workers (two IngestProcess of one server, over one warehouse): the first write starts
    one writer, both forward to it; when the worker that started it stops it, the other's next
    write starts one of its own. No write is lost or written twice."""
    warehouse = str(tmp_path / "warehouse")
    first, second = IngestProcess(lambda: warehouse), IngestProcess(lambda: warehouse)  # of one server: this process
    assert first.socket == second.socket
    with TestClient(Starlette(routes=first.routes())) as one, TestClient(Starlette(routes=second.routes())) as two:
        with ThreadPoolExecutor(8) as pool:  # both at once, before any writer runs
            answers = list(pool.map(lambda n: (one, two)[n % 2].post("/ingest/items", json=_items(f"a{n}", 2)), range(8)))
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        running = [p for p in (first._process, second._process) if p is not None and p.poll() is None]
        assert len(running) == 1  # one writer; a second one started in the race exited, leaving the writes to it
        owner, other = (first, second) if first._process is running[0] else (second, first)
        owner.close()
        again = (two if other is second else one).post("/ingest/items", json=_items("b", 2))
        assert again.status_code == 200, again.text
        assert other._process is not None and other._process.poll() is None and other._process is not running[0]
        other.close()
    keys = [c.key for c in read_changes(warehouse).changes]
    assert sorted(keys) == sorted([f"a{n}-{i}" for n in range(8) for i in range(2)] + ["b-0", "b-1"])


def test_the_ingest_process_stops_when_the_service_that_started_it_is_killed(tmp_path, torch_backend):
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ingest.forward import IngestProcess
        ingest = IngestProcess(lambda: {str(tmp_path / "warehouse")!r})
        ingest.start()
        while not os.path.exists(ingest.socket):  # it binds once its model is loaded
            time.sleep(0.1)
        print(ingest._process.pid, flush=True)
        time.sleep(600)
    """)
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(service.stdout.readline()))
        assert child.is_running()
        service.kill()  # no shutdown hook runs
        service.wait(10)
        assert _stops(child)
    finally:
        service.kill()


def test_a_worker_leaves_the_writer_to_the_others_and_it_stops_once_the_server_is_gone(tmp_path, torch_backend):
    """Under BentoML the server is the workers' arbiter, not the worker that started the writer:
    that worker's close forgets it, the writer goes on for the others, and stops with the server."""
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        ingest = IngestProcess(lambda: str(tmp_path / "warehouse"), lambda: server.pid)
        with TestClient(Starlette(routes=ingest.routes())) as client:
            assert client.post("/ingest/items", json=_items("w", 1)).status_code == 200
            writer = psutil.Process(ingest._process.pid)
            ingest.close()
        assert writer.is_running() and writer.status() != psutil.STATUS_ZOMBIE  # still there for the other workers
        other = IngestProcess(lambda: str(tmp_path / "warehouse"), lambda: server.pid)
        with TestClient(Starlette(routes=other.routes())) as client:
            assert client.post("/ingest/items", json=_items("x", 1)).status_code == 200
        assert other._process is None  # it used the running writer
        server.kill()
        server.wait(10)
        assert _stops(writer)
    finally:
        server.kill()
    assert sorted(c.key for c in read_changes(str(tmp_path / "warehouse")).changes) == ["w-0", "x-0"]
