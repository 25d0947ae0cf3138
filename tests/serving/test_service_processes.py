"""What needs a real `bentoml serve`: its request threads, and the questions of concurrent requests batched."""

from __future__ import annotations

import random
import time

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
