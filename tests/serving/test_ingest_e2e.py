"""The write API through a real `recqa serve` on loopback (slow: a real server process).

A warehouse with no release: the service is live but not ready, and writes still work (they
touch only the change log)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from registry.log import read_changes
from tests.serving.conftest import start_server, stop_server

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
        bad = requests.post(f"{server.base_url}/ingest/delete", json={"users": []}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["status"] == 400
    finally:
        stop_server(server.process)
    assert TOKEN not in server.log.read_text()  # tokens are never logged
