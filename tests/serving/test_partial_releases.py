"""A warehouse may hold the recommendation tables, the answers table, or both: the service
serves what the release names, and the endpoints of the absent tables answer 503 naming them.

In-process through the ASGI app. Slow: the warehouses are built by the real jobs, and the
service encodes questions with the real model.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import lance
import pytest
from starlette.testclient import TestClient

from features.ivf import search_nprobes
from features.schemas import table_uri
from pipelines import build_qa, build_recs, lance_io
from registry.log import read_releases
from tests.conftest import MS_CATALOG, MS_USAGE
from tests.serving.conftest import in_process

pytestmark = pytest.mark.slow

RECS_TABLES = ["items", "users"]  # sorted
DOCUMENTS = [
    {"doc_id": "git-strike", "question": "How do I cross out text on GitHub?", "answer": "Wrap the words in two tildes: ~~like this~~ renders struck through.", "source": "faq", "tags": ["markdown"]},
    {"doc_id": "pw-reset", "question": "How do I reset my password?", "answer": "Open Settings, then Security, and choose Reset password; a link is emailed to you.", "source": "faq"},
    {"doc_id": "acct-delete", "question": "How can I delete my account?", "answer": "Account deletion is under Settings, Privacy: it removes your data after 30 days.", "source": "help"},
    {"doc_id": "tea-brew", "question": "How long should green tea steep?", "answer": "Two to three minutes in water just below boiling, about 80 degrees Celsius.", "source": "help"},
]


def publish(warehouse: Path, names: list[str]) -> dict[str, int]:
    """Release the latest versions of `names` (other tables keep theirs), as publish does after its checks."""
    versions = lance_io.table_versions(str(warehouse), names)
    return lance_io.publish_release(str(warehouse), read_releases(str(warehouse)), versions, retain_releases=5).tables


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("documents") / "faq.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCUMENTS))
    return path


@pytest.fixture(scope="module")
def qa_only(tmp_path_factory, documents) -> Path:
    """A warehouse where only build-qa ever ran, its answers table published."""
    path = tmp_path_factory.mktemp("qa-only")
    build_qa.run(["--warehouse", str(path), "--input-format", "contract", "--documents", str(documents)])
    assert publish(path, ["answers"]) == {"answers": lance_io.table_versions(str(path), ["answers"])["answers"]}
    return path


@pytest.fixture(scope="module")
def recs_only(tmp_path_factory) -> Path:
    """A warehouse where only build-recs ever ran (the bundled ms-store data), users and items published."""
    path = tmp_path_factory.mktemp("recs-only")
    build_recs.run(["--warehouse", str(path), "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG)])
    assert sorted(publish(path, RECS_TABLES)) == RECS_TABLES
    return path


def served_gauge(client: TestClient) -> dict[str, int]:
    """The recqa_served_table_version samples of /metrics, by table."""
    response = client.get("/metrics")
    assert response.status_code == 200
    prefix = 'recqa_served_table_version{table="'
    return {
        line[len(prefix) :].split('"', 1)[0]: int(float(line.rsplit(" ", 1)[1]))
        for line in response.text.splitlines()
        if line.startswith(prefix)
    }


def assert_refused(response, missing: list[str], build: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["missing_tables"] == missing
    assert all(f"'{name}'" in body["error"] for name in missing)
    assert f"recqa {build}" in body["error"] and "publish" in body["error"]


def wait_for_tables(client: TestClient, tables: dict[str, int], timeout_seconds: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout_seconds
    served = client.get("/version").json()["tables"]
    while served != tables and time.monotonic() < deadline:
        time.sleep(0.2)
        served = client.get("/version").json()["tables"]
    return served


def test_a_qa_only_warehouse_answers_and_refuses_recommendations_naming_users_and_items(service_app, qa_only):
    published = read_releases(str(qa_only)).current.tables
    with in_process(service_app, qa_only) as client:
        assert client.get("/readyz").status_code == 200
        version = client.get("/version")
        assert version.status_code == 200
        assert version.json()["tables"] == published == {"answers": published["answers"]}
        assert list(version.json()["indexes"]) == ["answers.vector"]
        rows = lance.dataset(table_uri(str(qa_only), "answers"), version=published["answers"]).count_rows()
        assert version.json()["indexes"]["answers.vector"]["nprobes"] == search_nprobes(rows)  # as the served version is searched

        answer = client.post("/answer", json={"question": "Making the text on github crossed out", "k": 2})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == published
        assert [a["doc_id"] for a in answer.json()["answers"]][0] == "git-strike"
        keyword = client.post("/answer", json={"question": "steep green tea", "k": 1, "mode": "keyword"}).json()
        assert [a["doc_id"] for a in keyword["answers"]] == ["tea-brew"]

        for route, body in (
            ("/recommend", {"user_id": "u1", "k": 3}),
            ("/similar_items", {"item_id": "i1", "k": 3}),
            ("/search_items", {"query": "laptop sleeve", "k": 3}),
        ):
            assert_refused(client.post(route, json=body), ["users", "items"], "build-recs")
        assert client.post("/recommend", json={"user_id": "u1", "k": 0}).status_code == 400  # requests are still checked first
        assert served_gauge(client) == published


def test_a_recs_only_warehouse_recommends_and_refuses_answers_naming_the_answers_table(service_app, recs_only, usage_rows):
    published = read_releases(str(recs_only)).current.tables
    bought: dict[str, set[str]] = {}
    for user_id, item_id, _ in usage_rows:
        bought.setdefault(user_id, set()).add(item_id)
    user_id = max(bought, key=lambda u: len(bought[u]))
    with in_process(service_app, recs_only) as client:
        assert client.get("/readyz").status_code == 200
        version = client.get("/version").json()
        assert version["tables"] == published and sorted(published) == RECS_TABLES
        assert sorted(version["indexes"]) == ["items.content_vector", "items.vector"]

        recommended = client.post("/recommend", json={"user_id": user_id, "k": 5})
        assert recommended.status_code == 200, recommended.text
        body = recommended.json()
        assert body["strategy"] == "als" and body["version"] == published
        assert len(body["items"]) == 5 and not {item["item_id"] for item in body["items"]} & bought[user_id]
        similar = client.post("/similar_items", json={"item_id": "DAF-00502", "k": 3, "signal": "content"}).json()
        assert "KATE SPADE" in similar["items"][0]["title"]
        searched = client.post("/search_items", json={"query": "laptop sleeve for a surface", "k": 3}).json()
        assert all("sleeve" in item["title"].lower() for item in searched["items"])

        assert_refused(client.post("/answer", json={"question": "How do I cross out text?", "k": 3}), ["answers"], "build-qa")
        assert served_gauge(client) == published


def test_answers_published_later_are_picked_up_and_a_rollback_drops_them_again(service_app, recs_only, documents, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(recs_only, copy)
    recs = read_releases(str(copy)).current.tables
    with in_process(service_app, copy, reload_seconds=0.2) as client:
        assert client.get("/version").json()["tables"] == recs
        assert_refused(client.post("/answer", json={"question": "cross out text", "k": 1}), ["answers"], "build-qa")

        build_qa.run(["--warehouse", str(copy), "--input-format", "contract", "--documents", str(documents)])
        both = publish(copy, ["answers"])
        assert set(both) == {"users", "items", "answers"}
        assert wait_for_tables(client, both) == both
        answer = client.post("/answer", json={"question": "cross out text on github", "k": 1})
        assert answer.status_code == 200 and answer.json()["version"] == both
        assert client.post("/recommend", json={"user_id": "nobody", "k": 2}).json()["version"] == both
        assert served_gauge(client) == both

        lance_io.rollback_release(str(copy))
        assert wait_for_tables(client, recs) == recs
        assert_refused(client.post("/answer", json={"question": "cross out text", "k": 1}), ["answers"], "build-qa")
        assert served_gauge(client) == recs  # no version left behind for the table no longer served


@pytest.mark.parametrize(("released", "missing"), [("users", "items"), ("items", "users")])
def test_a_release_of_users_without_items_is_not_ready_naming_the_missing_one(service_app, recs_only, tmp_path, released, missing):
    copy = tmp_path / "warehouse"
    shutil.copytree(Path(table_uri(str(recs_only), released)), Path(table_uri(str(copy), released)))
    assert publish(copy, [released]) == {released: lance.dataset(table_uri(str(copy), released)).version}
    with in_process(service_app, copy) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        version = client.get("/version")
        assert version.status_code == 503
        assert f"names '{released}' but no '{missing}'" in version.json()["reason"]
        assert client.post("/recommend", json={"user_id": "u", "k": 1}).status_code == 503
        assert served_gauge(client) == {}


def test_a_full_warehouse_serves_every_endpoint_and_names_all_three_tables(service_app, warehouse):
    published = read_releases(str(warehouse)).current.tables
    with in_process(service_app, warehouse) as client:
        assert client.get("/version").json()["tables"] == published and sorted(published) == ["answers", "items", "users"]
        for route, body in (
            ("/recommend", {"user_id": "nobody", "k": 2}),
            ("/similar_items", {"item_id": "DAF-00502", "k": 2}),
            ("/search_items", {"query": "laptop sleeve", "k": 2}),
            ("/answer", {"question": "How do I cross out text on github?", "k": 2}),
        ):
            assert client.post(route, json=body).status_code == 200, route
        assert served_gauge(client) == published
