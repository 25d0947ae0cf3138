"""The write API through a real `recqa serve` on loopback (slow: a real server process).

A warehouse with no release: the service is live but not ready, and writes still work (they
touch only the change log)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from registry.log import change_cursor, read_changes, read_new_changes
from tests.serving.conftest import histogram, start_server, stop_server

pytestmark = pytest.mark.slow
TOKEN = "e2e-ingest-token-3c9d"


def test_a_real_server_writes_concurrent_requests_in_a_few_commits_behind_its_token(tmp_path):
    warehouse = tmp_path / "warehouse"
    server = start_server(warehouse, tmp_path, wait_ready=False, env={"RECQA_INGEST_TOKEN": TOKEN})
    try:
        url = f"{server.base_url}/ingest/items"
        wrong = requests.post(url, json={"items": [{"item_id": "x", "title": "t"}]}, headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and TOKEN not in wrong.text

        def write(n: int) -> requests.Response:
            body = {"items": [{"item_id": f"e2e-{n}", "title": f"item {n}"}]}
            return requests.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(write, range(20)))
        assert [r.status_code for r in responses] == [200] * 20, responses[0].text
        log = read_changes(str(warehouse))
        assert sorted(c.key for c in log.changes) == sorted(f"e2e-{n}" for n in range(20))
        assert log.version <= 10  # the table's creation plus a few commits, not twenty
        def metrics() -> str:
            return requests.get(f"{server.base_url}/metrics", timeout=30).text

        _until(lambda: histogram(metrics(), "recqa_ingest_commit_records")[0] == 20)  # recorded just after the answers
        commits = log.version - 1  # the table's creation, then one version a commit
        assert histogram(metrics(), "recqa_ingest_commit_records") == (20, commits)
        for stage in ("queued", "ahead", "append"):  # each commit's time, by stage
            assert histogram(metrics(), "recqa_ingest_commit_seconds", f'stage="{stage}"')[1] == commits
        bad = requests.post(f"{server.base_url}/ingest/delete", json={"users": []}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["status"] == 400
    finally:
        stop_server(server.process)
    assert TOKEN not in server.log.read_text()  # tokens are never logged


def _until(check, timeout: float = 30.0) -> float:
    """Seconds until `check()` holds (polled every 50 ms); fails after `timeout`."""
    import time

    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "the write never became visible"
        time.sleep(0.05)
    return time.monotonic() - start


def test_writes_through_a_real_server_are_served_without_a_build(warehouse, tmp_path):
    """Write, then read through the same real server: an upserted answer and item are found, a
    deleted answer is gone (cache included), a user's new events change their list."""
    import shutil

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    server = start_server(copy, tmp_path, env={"RECQA_INGEST_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # Readers keep questions being encoded the whole time: the writes are embedded beside them,
    # on the follower's own thread, beside the questions' batches.
    import threading

    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            requests.post(f"{server.base_url}/answer", json={"question": "How do I reset my password?", "k": 3}, timeout=60)

    readers = [threading.Thread(target=read, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        question = {"question": "How do I paint my rowing boat with marine varnish?", "k": 3, "mode": "keyword"}
        answer = {"doc_id": "fresh-boat", "question": "How do I varnish a rowing boat?",
                  "answer": "Sand the rowing boat, then brush thin coats of marine varnish and let each coat dry."}
        written = requests.post(f"{server.base_url}/ingest/answers", json={"answers": [answer]}, headers=auth, timeout=60)
        assert written.status_code == 200 and written.json()["accepted"] == 1
        for mode in ("keyword", "vector", "hybrid"):
            _until(lambda: "fresh-boat" in [a["doc_id"] for a in server.post("/answer", {**question, "mode": mode}).json()["answers"]])
        assert server.get("/answers/fresh-boat").status_code == 200
        # the writer logged the texts' vectors with the answer, so no follower embeds them again
        logged = [c for c in read_new_changes(str(copy), read_changes(str(copy)).version, change_cursor(str(copy), 0))[0] if c.key == "fresh-boat"]
        assert len(logged) == 1 and logged[0].embeddings is not None and logged[0].embeddings.model == "all-MiniLM-L6-v2"
        assert logged[0].embeddings.vectors.shape == (len(logged[0].embeddings.digests), 384)

        item = {"item_id": "fresh-kayak", "title": "Inflatable kayak with paddle", "category": "Outdoor"}
        assert requests.post(f"{server.base_url}/ingest/items", json={"items": [item]}, headers=auth, timeout=60).status_code == 200
        _until(lambda: "fresh-kayak" in [i["item_id"] for i in server.post("/search_items", {"query": "inflatable kayak paddle", "k": 5}).json()["items"]])

        deleted = requests.post(f"{server.base_url}/ingest/delete", json={"answers": ["fresh-boat"], "items": ["fresh-kayak"]}, headers=auth, timeout=60)
        assert deleted.status_code == 200 and deleted.json()["accepted"] == 2
        _until(lambda: server.get("/answers/fresh-boat").status_code == 404)
        for mode in ("keyword", "vector", "hybrid"):  # the cached answer of the same question goes too
            assert "fresh-boat" not in [a["doc_id"] for a in server.post("/answer", {**question, "mode": mode}).json()["answers"]]
        assert "fresh-kayak" not in [i["item_id"] for i in server.post("/search_items", {"query": "inflatable kayak paddle", "k": 5}).json()["items"]]

        user = "fresh-user-without-history"
        before = server.post("/recommend", {"user_id": user, "k": 5}).json()
        assert before["strategy"] == "popular"
        seen = [i["item_id"] for i in before["items"][:2]]
        events = [{"user_id": user, "item_id": item_id, "timestamp": 1_700_000_000 + n} for n, item_id in enumerate(seen)]
        assert requests.post(f"{server.base_url}/ingest/events", json={"events": events}, headers=auth, timeout=60).status_code == 200
        _until(lambda: server.post("/recommend", {"user_id": user, "k": 5}).json()["strategy"] == "fold_in")
        after = server.post("/recommend", {"user_id": user, "k": 5}).json()
        assert not set(seen) & {i["item_id"] for i in after["items"]}  # what they just had is not recommended again
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
        stop_server(server.process)
    assert "cannot apply the change log" not in server.log.read_text()


def test_two_workers_share_one_writer_and_both_serve_its_writes(warehouse, tmp_path):
    """RECQA_WORKERS=2 with the write API: writes that reach either worker go to one ingest
    process, are logged once each, and both workers then find them."""
    import shutil
    import time

    import psutil

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    server = start_server(copy, tmp_path, env={"RECQA_WORKERS": "2", "RECQA_INGEST_TOKEN": TOKEN, "RECQA_ACCESS_LOG": "1"})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 120
        while not all(f"[entry_service:recqa:{i}] Service recqa initialized" in server.log.read_text() for i in (1, 2)):
            assert time.monotonic() < deadline, server.log.read_text()[-4000:]
            time.sleep(0.5)

        def write(n: int) -> requests.Response:
            answer = {"doc_id": f"shared-{n}", "question": f"How do I wax a toboggan number {n}?",
                      "answer": f"Rub toboggan wax number {n} along the runners, then buff them."}
            return requests.post(f"{server.base_url}/ingest/answers", json={"answers": [answer]}, headers=auth, timeout=60)

        with ThreadPoolExecutor(10) as pool:
            written = list(pool.map(write, range(30)))
        assert [r.status_code for r in written] == [200] * 30, [r.text for r in written if r.status_code != 200][:1]

        def writers() -> list[psutil.Process]:
            return [p for p in psutil.Process(server.process.pid).children(recursive=True)
                    if "ingest.process" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]

        _until(lambda: len(writers()) == 1)  # one writer; one that lost the race to start has exited
        # its socket: listening, and one connection from each worker that forwarded a write
        assert len([c for c in writers()[0].net_connections("unix") if c.laddr.endswith("ingest.sock")]) == 3
        keys = [c.key for c in read_changes(str(copy)).changes]
        assert sorted(keys) == sorted(f"shared-{n}" for n in range(30))  # each once

        question = {"question": "toboggan wax number 7 runners", "k": 3, "mode": "keyword"}
        _until(lambda: "shared-7" in [a["doc_id"] for a in server.post("/answer", question).json()["answers"]])
        _until(lambda: all("shared-7" in [a["doc_id"] for a in r.json()["answers"]]  # from whichever worker takes each
                           for r in ThreadPoolExecutor(8).map(lambda _: server.post("/answer", question), range(16))))
        lines = server.log.read_text().splitlines()
        for worker in ("1", "2"):
            assert any(f"[entry_service:recqa:{worker}]" in line and "path=/answer" in line for line in lines)
    finally:
        stop_server(server.process)
    assert TOKEN not in server.log.read_text()
