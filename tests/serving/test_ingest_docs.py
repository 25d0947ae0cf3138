"""The write API is part of the service: mounted on its app, behind its guard, in its spec and
docs page with its body schemas. In-process through the service's ASGI app (no lifespan)."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from ingest.api import BODIES, IngestResult
from tests.serving.conftest import in_process

ROUTES = {f"/ingest/{name}": model for name, model in BODIES.items()}


@pytest.fixture(scope="module")
def client(service_app) -> TestClient:
    return TestClient(service_app)


def test_the_spec_lists_every_ingest_route_with_its_body_and_answers(client):
    spec = client.get("/openapi.json").json()
    for path, model in ROUTES.items():
        operation = spec["paths"][path]["post"]
        assert operation["tags"] == ["Ingest"] and "RECQA_INGEST_TOKEN" in operation["description"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == set(model.model_fields)
        assert {"200", "400", "401", "404", "413", "422", "503"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
        result = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(result["properties"]) == set(IngestResult.model_fields)
        refs = [v for v in str(result).split("'") if v.startswith("#/components/schemas/")]
        assert refs and all(ref.rsplit("/", 1)[-1] in spec["components"]["schemas"] for ref in refs)
    item = spec["paths"]["/ingest/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["items"]
    assert item["maxItems"] == 1000 and {"item_id", "title"} <= set(item["items"]["required"])


def test_the_page_shows_the_ingest_routes_and_their_fields(client):
    page = client.get("/docs").text
    for path in ROUTES:
        assert f"<code>{path}</code>" in page
    assert "<code>answers</code>" in page and "<code>visible_by</code>" in page


def test_the_service_guards_the_write_api(client):
    # whatever RECQA_INGEST_TOKEN this process has, a request without a token never writes
    response = client.post("/ingest/items", json={"items": [{"item_id": "i", "title": "t"}]})
    assert response.status_code in (401, 404) and response.json()["status"] == response.status_code


def test_the_write_door_guards_each_start_with_that_starts_token(service_app, warehouse):
    """The write API's requests skip BentoML's layers and its guard (serving/service.py): their
    own guard takes the tokens of each start, as the service's does."""
    body = {"items": [{"item_id": "i", "title": "t"}]}
    with in_process(service_app, warehouse) as started:
        assert started.post("/ingest/items", json=body).status_code == 404  # no token: no write API
    with in_process(service_app, warehouse, env={"RECQA_INGEST_TOKEN": "door-token", "RECQA_MAX_BODY_BYTES": "4096"}) as started:
        wrong = started.post("/ingest/items", json=body, headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 401 and wrong.json()["field"] == "Authorization"
        auth = {"Authorization": "Bearer door-token"}
        form = started.post("/ingest/items", content=b"items=1", headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415 and form.json()["field"] == "Content-Type"
        large = started.post("/ingest/items", json={"items": [{"item_id": "i", "title": "t" * 5000}]}, headers=auth)
        assert large.status_code == 413
        # the right token reaches the write API's process: its own answer (a record without an id writes nothing)
        deadline = time.monotonic() + 180
        while True:
            passed = started.post("/ingest/items", json={"items": [{"title": "no id"}]}, headers=auth)
            if passed.status_code != 503 or "still starting" not in passed.text or time.monotonic() > deadline:
                break
        assert passed.status_code == 422 and passed.json()["rejected"][0]["field"] == "item_id", passed.text
