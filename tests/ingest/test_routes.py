"""The write API through its real routes and the guard: what is written, what is refused and why."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from features.changes import ANSWERS, DELETE, EVENT, EVENTS, ITEMS, UPSERT, USERS, Change, fold
from ingest.api import MAX_RECORDS_PER_REQUEST
from ingest.routes import COMMIT_HEADER, IngestEndpoints, commit_of_header
from ingest.writer import BatchingWriter
from pipelines.lance_io import append_changes, dataset
from registry.log import read_changes
from serving.guard import GuardMiddleware, GuardSettings
from tests.ingest.conftest import AUTH, TOKEN, ingest_app

SHAPE = {"error", "field", "status"}


def logged(warehouse) -> list[tuple[str, str, str]]:
    return [(c.kind, c.op, c.key) for c in read_changes(str(warehouse)).changes]


def item(key: str, **extra) -> dict:
    return {"item_id": key, "title": f"title of {key}", **extra}


def test_each_endpoint_answers_once_its_records_are_in_the_log(client, warehouse):
    before = datetime.now(timezone.utc)
    calls = [
        ("/ingest/items", {"items": [item("i1"), item("i2", text="blue", category="c")]}, [(ITEMS, UPSERT, "i1"), (ITEMS, UPSERT, "i2")]),
        ("/ingest/answers", {"answers": [{"doc_id": "d1", "answer": "Restart it.", "tags": ["x"]}]}, [(ANSWERS, UPSERT, "d1")]),
        ("/ingest/events", {"events": [{"user_id": "u1", "item_id": "i1", "timestamp": 1_700_000_000}]}, [(EVENTS, EVENT, "u1")]),
        ("/ingest/delete", {"items": ["i2"], "answers": ["d1"], "users": ["u1"]}, [(ITEMS, DELETE, "i2"), (ANSWERS, DELETE, "d1"), (USERS, DELETE, "u1")]),
    ]
    expected = []
    for route, body, changes in calls:
        response = client.post(route, json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["accepted"] == len(changes) and answer["rejected"] == []
        assert datetime.fromisoformat(answer["visible_by"]) > before
        expected += changes
        # acknowledged means already in the log, at the version the answer names or before it
        assert logged(warehouse) == expected
        assert answer["version"] == read_changes(str(warehouse)).version
    state = fold(read_changes(str(warehouse)).changes)
    assert [i.item_id for i in state.upserted_items()] == ["i1"] and state.deleted(ITEMS) == {"i2"}
    assert state.deleted(ANSWERS) == {"d1"} and state.forgotten == {"u1"} and state.events == ()


def test_the_write_api_needs_its_own_token_and_is_absent_without_one(warehouse):
    off, _ = ingest_app(warehouse, GuardSettings(admin_token="admin-x", api_token="api-x"))
    for headers in ({}, AUTH, {"Authorization": "Bearer admin-x"}):
        response = TestClient(off).post("/ingest/items", json={"items": [item("i")]}, headers=headers)
        assert response.status_code == 404 and response.json()["status"] == 404
    on, _ = ingest_app(warehouse, GuardSettings(admin_token="admin-x", api_token="api-x", ingest_token=TOKEN))
    client = TestClient(on)
    for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": "Bearer api-x"}, {"Authorization": "Bearer admin-x"}):
        response = client.post("/ingest/delete", json={"users": ["u"]}, headers=headers)
        assert response.status_code == 401 and response.json()["field"] == "Authorization"
        assert TOKEN not in response.text and TOKEN[:-1] not in response.text
    assert dataset(str(warehouse), "changes") is None  # nothing refused was written, not even the table
    assert client.post("/ingest/delete", json={"users": ["u"]}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/ingest/items", [item("i")], None),  # not an object
        ("/ingest/items", {"items": [item("i")], "dry_run": True}, "dry_run"),  # unknown key
        ("/ingest/items", {"itemz": [item("i")]}, "itemz"),  # unknown key named before the missing one
        ("/ingest/answers", {"answers": []}, "answers"),
        ("/ingest/events", {"events": {"user_id": "u"}}, "events"),
        ("/ingest/items", {"items": [item(f"i{n}") for n in range(MAX_RECORDS_PER_REQUEST + 1)]}, "items"),
        ("/ingest/delete", {}, None),
        ("/ingest/delete", {"users": "u1"}, "users"),
        ("/ingest/delete", {"items": ["a"] * 600, "users": ["b"] * 401}, None),
    ],
)
def test_a_bad_envelope_is_400_in_the_error_shape_naming_the_field(client, warehouse, route, body, field):
    response = client.post(route, json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert SHAPE <= set(answer) and answer["status"] == 400 and answer["field"] == field and answer["error"]
    if "items" in body and isinstance(body, dict) and len(body["items"]) > MAX_RECORDS_PER_REQUEST:
        assert f"at most {MAX_RECORDS_PER_REQUEST:,}" in answer["error"]
    assert logged(warehouse) == []


def test_a_body_that_is_not_json_is_400(client):
    response = client.post("/ingest/items", content=b"{items", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_bad_records_are_listed_by_index_and_field_while_the_good_ones_land(client, warehouse):
    records = [
        item("good-1"),
        item("typo", colour="red"),  # unknown field
        {"title": "no id"},  # missing id
        item("huge", text="x" * 100_000),  # a 100 kB text
        item("nul", title="bad\x00title"),  # a NUL
        "not a record",
        item("good-2"),
    ]
    response = client.post("/ingest/items", json={"items": records}, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "colour"), (2, "item_id"), (3, "text"), (4, "title"), (5, None)]
    assert all(r["reason"] for r in answer["rejected"])
    assert logged(warehouse) == [(ITEMS, UPSERT, "good-1"), (ITEMS, UPSERT, "good-2")]


def test_a_100kb_answer_alone_is_422_and_nothing_is_written(client, warehouse):
    response = client.post("/ingest/answers", json={"answers": [{"doc_id": "d", "answer": "y" * 100_000}]}, headers=AUTH)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["field"] == "answer" and answer["accepted"] == 0 and "exceeds the limit" in answer["error"]
    assert answer["rejected"] == [{"index": 0, "field": "answer", "reason": answer["rejected"][0]["reason"]}]
    assert logged(warehouse) == []


def test_deletes_refuse_bad_ids_by_list_and_keep_unknown_ids_as_tombstones(client, warehouse):
    response = client.post("/ingest/delete", json={"items": ["never-seen", ""], "users": ["u\x00x", 7, "u2"]}, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    assert [(r["field"], r["index"]) for r in answer["rejected"]] == [("items", 1), ("users", 0), ("users", 1)]
    state = fold(read_changes(str(warehouse)).changes)
    assert state.deleted(ITEMS) == {"never-seen"} and state.forgotten == {"u2"}


def test_a_failed_commit_is_503_and_nothing_is_acknowledged(warehouse):
    def failing(changes):
        raise OSError("disk full")

    app, endpoints = ingest_app(warehouse, make_writer=lambda _: BatchingWriter(failing, interval_seconds=0.01))
    response = TestClient(app).post("/ingest/items", json={"items": [item("i")]}, headers=AUTH)
    endpoints.close()
    assert response.status_code == 503
    assert "disk full" in response.json()["error"] and "send it again" in response.json()["error"]
    assert logged(warehouse) == []


async def _post_all(app, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        return await asyncio.gather(*(client.post(route, json=body, headers=AUTH) for route, body in bodies))


def test_fifty_concurrent_writes_make_a_few_commits_and_each_record_lands_once(warehouse):
    app, endpoints = ingest_app(warehouse)
    asyncio.run(_post_all(app, [("/ingest/delete", {"users": ["warm-up"]})]))  # the table exists: count versions from here
    start = read_changes(str(warehouse)).version
    responses = asyncio.run(_post_all(app, [("/ingest/items", {"items": [item(f"c{n}")]}) for n in range(50)]))
    endpoints.close()
    assert [r.status_code for r in responses] == [200] * 50
    assert read_changes(str(warehouse)).version - start <= 5  # 50 writes, a handful of commits
    keys = [key for kind, _, key in logged(warehouse) if kind == ITEMS]
    assert sorted(keys) == sorted(f"c{n}" for n in range(50))
    assert max(r.json()["version"] for r in responses) == read_changes(str(warehouse)).version


def test_two_api_writers_and_a_direct_append_at_once_lose_and_duplicate_nothing(warehouse):
    apps = [ingest_app(warehouse) for _ in range(2)]
    direct: list[int] = []

    def append_directly():
        for n in range(5):
            direct.append(append_changes(str(warehouse), [Change(ITEMS, DELETE, f"direct-{n}")]))

    def write_through(index: int):
        bodies = [("/ingest/items", {"items": [item(f"w{index}-{n}")]}) for n in range(20)]
        results[index] = asyncio.run(_post_all(apps[index][0], bodies))

    results: dict[int, list] = {}
    threads = [threading.Thread(target=write_through, args=(i,)) for i in range(2)] + [threading.Thread(target=append_directly)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _, endpoints in apps:
        endpoints.close()
    assert all(r.status_code == 200 for responses in results.values() for r in responses)
    keys = [key for _, _, key in logged(warehouse)]
    expected = [f"w{i}-{n}" for i in range(2) for n in range(20)] + [f"direct-{n}" for n in range(5)]
    assert sorted(keys) == sorted(expected) and len(direct) == 5


def test_the_ingest_process_answers_with_its_commits_version_and_timings_and_the_service_without(warehouse):
    """COMMIT_HEADER: what ingest/forward.py passes to the service's /metrics; a write API
    made without `timings_header` (a test's, or one a client reaches) sends none."""
    for timings_header in (False, True):
        endpoints = IngestEndpoints(lambda: str(warehouse), timings_header=timings_header)
        app = GuardMiddleware(Starlette(routes=endpoints.routes()), GuardSettings(ingest_token=TOKEN),
                              json_routes=frozenset(r.path for r in endpoints.routes()))
        with TestClient(app) as client:
            response = client.post("/ingest/items", json={"items": [item("i1"), item("i2")]}, headers=AUTH)
        endpoints.close()
        assert response.status_code == 200, response.text
        if not timings_header:
            assert COMMIT_HEADER not in response.headers
            continue
        version, timings = commit_of_header(response.headers[COMMIT_HEADER])
        assert version == response.json()["version"] == read_changes(str(warehouse)).version
        assert timings.records == 2 and min(timings.queued, timings.ahead, timings.append) >= 0
