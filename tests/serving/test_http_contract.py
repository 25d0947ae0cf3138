"""HTTP contracts through the whole ASGI app (BentoML's middlewares and the front door included):
one error shape, 4xx logged at INFO, what a client renders, bounded metric labels.

In-process over a small warehouse built by the real jobs (the bundled ms-store data, four
answers). Slow: the jobs and the service encode with the real model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import string

import pytest

from pipelines import build_qa, build_recs, publish
from tests.conftest import MS_CATALOG, MS_USAGE
from tests.serving.conftest import in_process
from tests.serving.test_partial_releases import DOCUMENTS

pytestmark = pytest.mark.slow

SHAPE = {"error", "field", "status"}


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract-warehouse")
    documents = path / "faq.jsonl"
    documents.write_text("".join(json.dumps(doc) + "\n" for doc in DOCUMENTS))
    recs = build_recs.run(["--warehouse", str(path), "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)])
    qa = build_qa.run(["--warehouse", str(path), "--input-format", "contract", "--documents", str(documents)])
    publish.run(["--warehouse", str(path), "--candidate", recs.candidate, "--candidate", qa.candidate, "--force"])
    return path


@pytest.fixture(scope="module")
def client(service_app, small_warehouse):
    with in_process(service_app, small_warehouse) as running:
        yield running


def assert_shape(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert SHAPE <= set(body) and body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert body["field"] == field, body
    assert "IODescriptor" not in response.text and "pydantic.dev" not in response.text
    return body


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/recommend", {"user_id": "u", "k": 0}, "k"),
        ("/recommend", {"k": 5}, "user_id"),
        ("/recommend", {"user_id": "   "}, "user_id"),
        ("/recommend", {"user_id": "u", "kk": 5}, "kk"),
        ("/recommend", {"user_id": "u", "filters": {"category": "Surface"}}, "filters.category"),
        ("/answer", {"question": " \n\t "}, "question"),
        ("/answer", {"question": "tea", "mode": "rrf"}, "mode"),
        ("/search_items", {"query": "  "}, "query"),
        ("/similar_items", {"item_id": "\t"}, "item_id"),
    ],
)
def test_bad_bodies_are_400_in_the_shape_naming_the_field(client, route, body, field):
    message = assert_shape(client.post(route, json=body), 400, field)["error"]
    assert message.startswith(f"{field}:")


def test_every_other_error_is_in_the_same_shape(client):
    assert_shape(client.post("/recommend", content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_shape(client.post("/recommend", content=b"[1, 2]", headers={"Content-Type": "application/json"}), 400)
    assert "/nope/x" in assert_shape(client.get("/nope/x"), 404)["error"]
    assert "POST" in assert_shape(client.get("/recommend"), 405)["error"]
    assert "no-such-item" in assert_shape(client.post("/similar_items", json={"item_id": "no-such-item"}), 404, "item_id")["error"]
    assert_shape(client.get("/items/no-such-item"), 404, "item_id")
    assert_shape(client.get("/answers/no-such-doc"), 404, "doc_id")
    form = client.post("/recommend", content=b"user_id=u", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "application/json" in assert_shape(form, 415, "Content-Type")["error"]
    assert_shape(client.post("/answer", content=b'{"question": "' + b"x" * (1 << 20) + b'"}'), 413)


def test_a_body_without_content_type_or_as_text_plain_is_read_as_json(client):
    for headers in ({}, {"Content-Type": "text/plain"}):
        response = client.post("/recommend", content=b'{"user_id": "nobody", "k": 2}', headers=headers)
        assert response.status_code == 200, response.text


def test_a_server_error_is_in_the_shape_and_logged_at_error(client, monkeypatch, caplog):
    from serving.recommender import Recommender

    def broken(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(Recommender, "for_user", broken)
    with caplog.at_level(logging.INFO):
        body = assert_shape(client.post("/recommend", json={"user_id": "u"}), 500)
    assert "forced failure" not in body["error"]  # internals stay in the log
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)  # BentoML's traceback kept


def test_client_errors_are_logged_once_at_info_without_a_traceback(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/recommend", json={"user_id": "u", "k": 0})
        client.post("/similar_items", json={"item_id": "no-such-item"})
        client.get("/nope")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info]
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.front"]
    assert len(lines) == 3 and lines[0].startswith("400 POST /recommend [field k]") and lines[1].startswith("404 POST /similar_items")


def test_responses_carry_what_a_client_renders(client, usage_rows):
    catalogue = {row[0]: row for row in __import__("csv").reader(MS_CATALOG.open(newline=""))}
    recommended = client.post("/recommend", json={"user_id": "nobody", "k": 5}).json()
    assert recommended["strategy"] == "popular"
    for item in recommended["items"]:
        assert item["category"] == catalogue[item["item_id"]][2]
    buyers: dict[str, set[str]] = {}
    for user_id, item_id, _ in usage_rows:
        buyers.setdefault(item_id, set()).add(user_id)
    top = max(len(users) for users in buyers.values())
    scores = [item["score"] for item in recommended["items"]]
    assert scores[0] == 1.0 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores == [len(buyers[item["item_id"]]) / top for item in recommended["items"]]

    one = recommended["items"][0]
    item = client.get(f"/items/{one['item_id']}").json()
    assert (item["item_id"], item["title"], item["category"]) == (one["item_id"], one["title"], one["category"])
    assert item["popularity"] == len(buyers[one["item_id"]])

    answers = client.post("/answer", json={"question": "How do I cross out text on GitHub?", "k": 1}).json()["answers"]
    first = answers[0]
    expected = next(doc for doc in DOCUMENTS if doc["doc_id"] == first["doc_id"])
    assert (first["source"], first["tags"], first["chunk_id"]) == (expected["source"], expected.get("tags", []), 0)
    document = client.get(f"/answers/{first['doc_id']}").json()
    assert (document["question"], document["text"], document["source"]) == (expected["question"], expected["answer"], expected["source"])


def test_random_paths_share_one_metric_label(client, service_app):
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_~"
    paths = {"/" + "/".join("".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 3))) for _ in range(10_000)}
    statuses = asyncio.run(_get_all(service_app, sorted(paths)))  # straight into the ASGI app: 10,000 through TestClient take a minute
    assert set(statuses) == {404}
    client.get("/items/DAF-00502")
    client.get("/items/no-such-item")
    text = client.get("/metrics").text
    labels = set(re.findall(r'^bentoml_service_request_total\{endpoint="([^"]*)"', text, flags=re.M))
    assert "unknown" in labels and "/items/{item_id:path}" in labels
    assert not labels & paths and "/items/DAF-00502" not in labels
    assert labels <= set(_route_templates(service_app.app.routes)) | {"unknown"}  # bounded: the declared routes and `unknown`


def _route_templates(routes, prefix: str = "") -> list[str]:
    """Every path template the app declares, mounted apps' included."""
    from starlette.routing import Mount

    out = []
    for route in routes:
        if isinstance(route, Mount):
            out += _route_templates(route.routes, prefix + route.path)
        else:
            out.append(prefix + route.path)
    return out


async def _get_all(app, paths: list[str]) -> list[int]:
    """GET each path through the ASGI app (whose lifespan the client started); the statuses."""
    statuses: list[int] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for path in paths:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
                 "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
        await app(scope, receive, send)
    return statuses
