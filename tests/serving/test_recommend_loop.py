"""/recommend runs on the event loop while its scoring is small and it folds nothing in
(serving/service.py, LOOP_MAX_SCORING), on a thread otherwise; the answer is the same either way."""

from __future__ import annotations

import asyncio

from serving import service
from tests.serving.conftest import in_process


def on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a worker thread has no running loop
        return False
    return True


def test_recommend_runs_on_the_loop_only_below_the_scoring_bound_and_without_recent_items(service_app, warehouse, usage_rows, monkeypatch):
    handler = service.RecQA.inner._recommend
    where: list[bool] = []

    def recorded(self, *args, **kwargs):
        where.append(on_the_loop())
        return handler(self, *args, **kwargs)

    monkeypatch.setattr(service.RecQA.inner, "_recommend", recorded)
    bodies = [{"user_id": usage_rows[0][0], "k": 5}, {"user_id": "nobody-ever", "k": 3}, {"user_id": usage_rows[1][0], "k": 4, "recent_item_ids": [usage_rows[2][1]]}]
    answers: dict[int, list[dict]] = {}
    with in_process(service_app, warehouse) as client:
        for bound in (service.LOOP_MAX_SCORING, 0):
            monkeypatch.setattr(service, "LOOP_MAX_SCORING", bound)  # read at each request
            responses = [client.post("/recommend", json=body) for body in bodies]
            assert [r.status_code for r in responses] == [200, 200, 200]
            answers[bound] = [r.json() for r in responses]
    # the bundled catalogue is far below the bound; a fold-in goes to a thread at any size
    assert where == [True, True, False] + [False, False, False]
    assert answers[0] == answers[service.LOOP_MAX_SCORING]
    assert [a["strategy"] for a in answers[0]] == ["als", "popular", "fold_in"]
