"""What needs a real `bentoml serve` (the encoder as its own process, batching across requests)."""

from __future__ import annotations

import random

import pytest

from features.adapters import stackfaq_queries

pytestmark = pytest.mark.slow


def _histogram(metrics: str, name: str, method: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram's series for one method_name, across workers."""
    totals = {"sum": 0.0, "count": 0.0}
    for line in metrics.splitlines():
        for part in totals:
            if line.startswith(f"{name}_{part}{{") and f'method_name="{method}"' in line:
                totals[part] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def _counter(metrics: str, name: str, label: str) -> float:
    """A Prometheus counter's value for one label set, summed across workers."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(f"{name}_total{{") and label in line)


def test_concurrent_questions_share_encoder_batches_and_a_lone_one_is_encoded_locally(server, stackfaq_data):
    from concurrent.futures import ThreadPoolExecutor

    questions = [q for q, _ in random.Random(11).sample(stackfaq_queries(stackfaq_data), 49)]
    metrics = server.get("/metrics").text
    before = _histogram(metrics, "bentoml_service_adaptive_batch_size", "encode")
    local_before = _counter(metrics, "recqa_question_encodes", 'path="local"')
    with ThreadPoolExecutor(max_workers=24) as pool:
        responses = list(pool.map(lambda q: server.post("/answer", {"question": q, "k": 2, "mode": "vector"}), questions[:48]))
    assert [r.status_code for r in responses] == [200] * 48
    assert all(len(r.json()["answers"]) == 2 for r in responses)
    metrics = server.get("/metrics").text
    total, batches = (a - b for a, b in zip(_histogram(metrics, "bentoml_service_adaptive_batch_size", "encode"), before))
    local = _counter(metrics, "recqa_question_encodes", 'path="local"') - local_before
    assert total + local == 48  # every question is encoded once (the cache is keyed by its vector), one way or the other
    assert 0 < batches < total  # fewer forward passes than batched questions: some batches held several
    lone = server.post("/answer", {"question": questions[48], "k": 2, "mode": "vector"})  # nothing else in flight
    assert lone.status_code == 200
    assert _counter(server.get("/metrics").text, "recqa_question_encodes", 'path="local"') == local_before + local + 1