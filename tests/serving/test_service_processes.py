"""What needs a real `bentoml serve`: its request threads, and the questions of concurrent requests batched."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from features.adapters import stackfaq_queries
from tests.serving.conftest import histogram

pytestmark = pytest.mark.slow


def test_concurrent_questions_share_forward_passes_and_a_lone_one_is_encoded_alone(server, stackfaq_data):
    from concurrent.futures import ThreadPoolExecutor

    questions = [q for q, _ in random.Random(11).sample(stackfaq_queries(stackfaq_data), 49)]
    before = histogram(server.get("/metrics").text, "recqa_question_batch_size")
    with ThreadPoolExecutor(max_workers=24) as pool:
        responses = list(pool.map(lambda q: server.post("/answer", {"question": q, "k": 2, "mode": "vector"}), questions[:48]))
    assert [r.status_code for r in responses] == [200] * 48
    assert all(len(r.json()["answers"]) == 2 for r in responses)
    texts, passes = (a - b for a, b in zip(histogram(server.get("/metrics").text, "recqa_question_batch_size"), before))
    assert texts == 48  # every question is encoded once (the cache is keyed by its vector)
    assert 0 < passes < texts  # fewer forward passes than questions: some passes held several
    lone = server.post("/answer", {"question": questions[48], "k": 2, "mode": "vector"})  # nothing else in flight
    assert lone.status_code == 200
    assert histogram(server.get("/metrics").text, "recqa_question_batch_size") == (before[0] + 49, before[1] + passes + 1)


def test_the_access_log_writes_a_line_per_request_when_asked(server):
    """The session server runs with RECQA_ACCESS_LOG=1: BentoML's line names the route (never an id) and the status."""
    assert server.post("/search_items", {"query": "cable", "k": 1}).status_code == 200
    assert server.get("/items/no-such-item").status_code == 404
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in server.log.read_text().splitlines() if "scheme=http" in line]
        if any("path=/items/{item_id:path}" in line and "status=404" in line for line in lines):
            break
        time.sleep(0.2)
    assert any("method=POST,path=/search_items" in line and "status=200" in line for line in lines)
    assert any("method=GET,path=/items/{item_id:path}" in line and "status=404" in line for line in lines)
    assert not any("no-such-item" in line for line in lines)  # the route's template, never the id


def _workers(server_pid: int) -> dict[str, int]:
    """The process id of each `--worker-id` under the server's process (BentoML's workers), from /proc."""
    children: dict[int, list[int]] = {}
    commands: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, parent = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
            commands[pid] = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
        children.setdefault(parent, []).append(pid)
    ids, todo = {}, [server_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            command = commands.get(child, [])
            if "--worker-id" in command:
                ids[command[command.index("--worker-id") + 1]] = child
    return ids


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.parametrize("asked", [{"RECQA_WORKERS": "2"}, {"BENTOML_CONFIG_OPTIONS": "services.recqa.workers=2"}],
                         ids=["RECQA_WORKERS", "bentoml-config"])
def test_two_workers_serve_from_two_processes_and_answer_as_one_does(server, warehouse, tmp_path, stackfaq_data, asked):
    """Two workers, asked through RECQA_WORKERS or BentoML's own configuration: BentoML runs two
    processes, each loading the tables and an encoder of its share of the cores, both answer,
    and concurrent questions get the answers one process gives."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.encoders import encoder_lanes
    from tests.serving.conftest import start_server, stop_server

    two = start_server(warehouse, tmp_path, env={**asked, "RECQA_ACCESS_LOG": "1"})  # a line a request, naming its worker
    try:
        deadline = time.monotonic() + 120
        while not all(f"[entry_service:recqa:{i}] Service recqa initialized" in two.log.read_text() for i in (1, 2)):
            assert time.monotonic() < deadline, two.log.read_text()[-4000:]
            time.sleep(0.5)
        workers = _workers(two.process.pid)
        assert sorted(workers) == ["1", "2"]
        version = two.get("/version").json()
        assert version["encoder"]["workers"] == 2 and version["encoder"]["lanes"] == encoder_lanes(1, workers=2)
        questions = [q for q, _ in random.Random(5).sample(stackfaq_queries(stackfaq_data), 40)]
        ask = lambda target: lambda q: target.post("/answer", {"question": q, "k": 3, "mode": "hybrid"})  # noqa: E731
        with ThreadPoolExecutor(max_workers=16) as pool:
            served = list(pool.map(ask(two), questions))
        expected = [ask(server)(q) for q in questions]  # the session's one-worker server, same warehouse
        assert [r.status_code for r in served] == [200] * len(questions)
        ids = lambda response: [a["doc_id"] for a in response.json()["answers"]]  # noqa: E731
        assert [ids(r) for r in served] == [ids(r) for r in expected]
        lines = two.log.read_text().splitlines()
        for worker in ("1", "2"):  # both processes answered some of the questions
            assert any(f"[entry_service:recqa:{worker}]" in line and "path=/answer" in line and "status=200" in line for line in lines)
    finally:
        stop_server(two.process)
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in workers.values()):  # both go with the server
        assert time.monotonic() < deadline, f"workers {workers} still run after the server stopped"
        time.sleep(0.2)
