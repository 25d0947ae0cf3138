"""End to end: the real pipelines' warehouse served in-process through the service's ASGI app
(BentoML's middlewares, the front door and the question batching included).

What needs a real server (its request threads batching questions across requests) is in
test_service_processes.py, against a real `bentoml serve`.
"""

from __future__ import annotations

from serving.encoders import MAX_BATCH_SIZE, encoder_lanes

import csv
import random

import pytest

from features.adapters import stackfaq_queries
from tests.conftest import MS_CATALOG
from tests.serving.conftest import InProcessServer, in_process
from registry.log import published_version

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(service_app, warehouse):
    """The service over the session's warehouse, in this process; the calls read as against a real server."""
    with in_process(service_app, warehouse) as client:
        yield InProcessServer(client)


@pytest.fixture(scope="module")
def purchases(usage_rows) -> dict[str, set[str]]:
    bought: dict[str, set[str]] = {}
    for user_id, item_id, _ in usage_rows:
        bought.setdefault(user_id, set()).add(item_id)
    return bought


@pytest.fixture(scope="module")
def catalogue() -> dict[str, str]:
    with MS_CATALOG.open(newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle)}


def test_health_and_readiness(server):
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200


def test_recommendations_are_the_exact_top_k_of_the_als_scores(server, warehouse):
    import lance
    import numpy as np

    users = lance.dataset(str(warehouse / "users.lance")).to_table().to_pylist()
    items = lance.dataset(str(warehouse / "items.lance")).to_table(columns=["item_id", "vector"])
    item_ids = items.column("item_id").to_pylist()
    item_vectors = np.stack(items.column("vector").to_numpy(zero_copy_only=False))
    for user in users[:: len(users) // 5][:5]:
        scores = item_vectors @ np.asarray(user["vector"], dtype=np.float32)
        ranked = [item_ids[i] for i in np.argsort(-scores) if item_ids[i] not in set(user["seen_item_ids"])][:5]
        body = server.post("/recommend", {"user_id": user["user_id"], "k": 5}).json()
        assert [item["item_id"] for item in body["items"]] == ranked


def test_known_users_get_k_items_none_of_which_they_bought(server, purchases, catalogue):
    heavy = max(purchases, key=lambda u: len(purchases[u]))  # hardest case: most items to exclude
    for user_id in (heavy, sorted(purchases)[0], sorted(purchases)[-1]):
        response = server.post("/recommend", {"user_id": user_id, "k": 10})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["strategy"] == "als"
        ids = [item["item_id"] for item in body["items"]]
        assert len(ids) == len(set(ids)) == 10
        assert not set(ids) & purchases[user_id]
        assert all(item["title"] == catalogue[item["item_id"]] for item in body["items"])
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)


def test_unknown_user_gets_popular_items_marked_as_such(server, purchases):
    response = server.post("/recommend", {"user_id": "no-such-user", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["strategy"] == "popular"
    buyers: dict[str, int] = {}
    for items in purchases.values():
        for item in items:
            buyers[item] = buyers.get(item, 0) + 1
    top = sorted(buyers.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
    most = max(buyers.values())
    assert [(item["item_id"], item["score"]) for item in body["items"]] == [(i, n / most) for i, n in top]


def test_similar_items_leave_the_item_out_and_share_its_words(server):
    response = server.post("/similar_items", {"item_id": "DAF-00502", "k": 3, "signal": "content"})
    assert response.status_code == 200
    body = response.json()
    assert body["signal"] == "content"  # a KATE SPADE Surface sleeve
    ids = [item["item_id"] for item in body["items"]]
    assert len(ids) == 3 and "DAF-00502" not in ids
    assert "KATE SPADE" in body["items"][0]["title"]


def test_rephrasings_find_an_answer_of_their_own_thread_in_the_top_3(server, stackfaq_data):
    queries = random.Random(7).sample(stackfaq_queries(stackfaq_data), 30)
    hits = 0
    for question, thread in queries:
        body = server.post("/answer", {"question": question, "k": 3}).json()
        assert len(body["answers"]) == 3
        hits += any(answer["doc_id"].startswith(thread + "-") for answer in body["answers"])
    # all-MiniLM-L6-v2 over question+answer finds the thread in the top 3 for 98% of all 1,249 rephrasings
    assert hits / len(queries) >= 0.9


def test_a_specific_rephrasing(server):
    response = server.post("/answer", {"question": "Making the text on github crossed out.", "k": 3})
    assert response.status_code == 200
    answers = response.json()["answers"]
    assert any(a["doc_id"].startswith("stackfaq-000-") for a in answers)
    assert all(a["text"] and a["question"] for a in answers)
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True) and 0.0 < scores[-1]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/recommend", {"user_id": "u", "k": 0}, "k"),
        ("/recommend", {"user_id": "u", "k": 101}, "k"),
        ("/recommend", {"k": 5}, "user_id"),
        ("/recommend", {"user_id": "u", "kk": 5}, "kk"),
        ("/answer", {"question": ""}, "question"),
        ("/similar_items", {"item_id": "x", "k": "many"}, "k"),
    ],
)
def test_bad_requests_get_400_naming_the_field(server, route, body, field):
    response = server.post(route, body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_unknown_item_is_404_naming_it(server):
    response = server.post("/similar_items", {"item_id": "no-such-item"})
    assert response.status_code == 404
    assert "no-such-item" in response.text


def test_category_filter_is_applied_before_ranking(server, purchases, catalogue):
    import csv as _csv

    with MS_CATALOG.open(newline="") as handle:
        category = {row[0]: row[2] for row in _csv.reader(handle)}
    user_id = sorted(purchases)[0]
    body = server.post("/recommend", {"user_id": user_id, "k": 5, "filters": {"category": ["Gaming", "PCs"]}}).json()
    allowed = {i for i, c in category.items() if c in ("Gaming", "PCs")} - purchases[user_id]
    assert {item["item_id"] for item in body["items"]} == allowed  # all 4 such items exist: a selective filter still fills
    popular = server.post("/recommend", {"user_id": "nobody", "k": 3, "filters": {"category": ["Surface"]}}).json()
    assert [category[item["item_id"]] for item in popular["items"]] == ["Surface"]


@pytest.mark.parametrize("value", ["' OR 1=1 --", "Accessories' OR category = 'Gaming", 'x"); DROP TABLE items; --'])
def test_filter_values_that_look_like_sql_are_plain_values(server, value):
    response = server.post("/recommend", {"user_id": "nobody", "k": 5, "filters": {"category": [value]}})
    assert response.status_code == 200
    assert response.json()["items"] == []
    answer = server.post("/answer", {"question": value, "k": 3, "filters": {"source": [value]}})
    assert answer.status_code == 200 and answer.json()["answers"] == []


def test_exclusions_and_exclude_seen_switch(server, warehouse, purchases):
    import lance
    import numpy as np

    user = lance.dataset(str(warehouse / "users.lance")).to_table().slice(0, 1).to_pylist()[0]
    items = lance.dataset(str(warehouse / "items.lance")).to_table(columns=["item_id", "vector"])
    scores = np.stack(items.column("vector").to_numpy(zero_copy_only=False)) @ np.asarray(user["vector"], dtype=np.float32)
    top = [items.column("item_id")[int(i)].as_py() for i in np.argsort(-scores)[:5]]
    body = server.post("/recommend", {"user_id": user["user_id"], "k": 5, "exclude_seen": False}).json()
    assert [item["item_id"] for item in body["items"]] == top
    body = server.post("/recommend", {"user_id": user["user_id"], "k": 5, "exclude_seen": False, "filters": {"exclude_item_ids": top[:2]}}).json()
    assert [item["item_id"] for item in body["items"]][:3] == top[2:]


def test_answer_modes_filters_and_diversity(server):
    question = "How do I make strikethrough text in github markdown?"
    for mode in ("keyword", "vector", "hybrid"):
        body = server.post("/answer", {"question": question, "k": 5, "mode": mode}).json()
        assert body["mode"] == mode and len(body["answers"]) == 5
        assert len({a["doc_id"] for a in body["answers"]}) == 5  # one entry per answer, however many chunks match
        assert any(a["doc_id"].startswith("stackfaq-000-") for a in body["answers"][:3])
        scores = [a["score"] for a in body["answers"]]
        assert scores == sorted(scores, reverse=True)
    keyword = server.post("/answer", {"question": "strikethrough", "k": 3, "mode": "keyword"}).json()["answers"]
    assert all("strikethrough" in (a["text"] + (a["question"] or "")).lower() for a in keyword)
    assert server.post("/answer", {"question": question, "k": 3, "filters": {"source": ["stackexchange"]}}).json()["answers"]
    assert server.post("/answer", {"question": question, "k": 3, "filters": {"tags": ["none-such"]}}).json()["answers"] == []
    diverse = server.post("/answer", {"question": question, "k": 4, "mode": "vector", "diversity": 0.3}).json()["answers"]
    plain = server.post("/answer", {"question": question, "k": 4, "mode": "vector"}).json()["answers"]
    assert len(diverse) == 4 and diverse[0]["doc_id"] == plain[0]["doc_id"]
    assert server.post("/answer", {"question": question, "diversity": 1.5}).status_code == 400


def test_admin_endpoints_do_not_exist_without_an_admin_token(server):
    """This service was started with no RECQA_ADMIN_TOKEN: any bearer token gets 404, nothing runs."""
    for path in ("/admin/reload", "/admin/cache/flush"):
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            response = server.client.post(path, headers=headers)
            assert response.status_code == 404, (path, headers, response.text)
    assert server.get("/readyz").status_code == 200


def test_responses_name_the_published_versions(server, warehouse):
    expected = {name: published_version(str(warehouse), name) for name in ("users", "items", "answers")}
    assert server.post("/recommend", {"user_id": "nobody", "k": 1}).json()["version"] == expected
    assert server.post("/answer", {"question": "github", "k": 1}).json()["version"] == expected


def test_recent_items_fold_in_a_new_user_and_reasons_name_a_known_item(server, warehouse):
    import lance
    import numpy as np

    from features.factorization import fold_in
    from features.schemas import ALSConfig

    items = lance.dataset(str(warehouse / "items.lance")).to_table(columns=["item_id", "vector"])
    ids = items.column("item_id").to_pylist()
    vectors = np.stack(items.column("vector").to_numpy(zero_copy_only=False))
    recent = ["DAF-00502", "DAF-00503"]
    expected_vector = fold_in(vectors, np.array([ids.index(i) for i in recent]), np.array([8.0, 8.0]), ALSConfig())
    expected = [ids[i] for i in np.argsort(-(vectors @ expected_vector)) if ids[i] not in recent][:5]

    body = server.post("/recommend", {"user_id": "brand-new", "k": 5, "recent_item_ids": recent + ["no-such-item"]}).json()
    assert body["strategy"] == "fold_in"
    assert [item["item_id"] for item in body["items"]] == expected
    assert all(item["reason"] in recent for item in body["items"])
    only_unknown = server.post("/recommend", {"user_id": "brand-new", "k": 5, "recent_item_ids": ["no-such-item"]}).json()
    assert only_unknown["strategy"] == "popular"


def test_als_recommendations_carry_a_reason_from_the_users_history(server, purchases):
    user_id = max(purchases, key=lambda u: len(purchases[u]))
    body = server.post("/recommend", {"user_id": user_id, "k": 5}).json()
    assert body["strategy"] == "als"
    assert all(item["reason"] in purchases[user_id] for item in body["items"])


def test_behaviour_neighbours_are_the_cosine_top_k_of_als_factors(server, warehouse):
    import lance
    import numpy as np

    items = lance.dataset(str(warehouse / "items.lance")).to_table(columns=["item_id", "vector"])
    ids = items.column("item_id").to_pylist()
    vectors = np.stack(items.column("vector").to_numpy(zero_copy_only=False))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    anchor = ids.index("DQF-00248")  # the most bought item
    expected = [ids[i] for i in np.argsort(-(unit @ unit[anchor])) if i != anchor][:4]
    body = server.post("/similar_items", {"item_id": "DQF-00248", "k": 4}).json()
    assert body["signal"] == "behaviour"
    assert [item["item_id"] for item in body["items"]] == expected


def test_search_items_by_free_text_with_filters(server):
    body = server.post("/search_items", {"query": "laptop sleeve for a surface", "k": 5}).json()
    assert len(body["items"]) == 5 and all("sleeve" in item["title"].lower() for item in body["items"][:3])
    gaming = server.post("/search_items", {"query": "laptop sleeve", "k": 5, "filters": {"category": ["Gaming"]}}).json()
    assert 0 < len(gaming["items"]) <= 2  # the bundled catalogue has two Gaming items
    assert server.post("/search_items", {"query": ""}).status_code == 400


def test_semantic_cache_hits_near_duplicates_and_metrics_count_it(server):
    question = "How can I search my Gmail for messages with attachments larger than 5MB?"
    first = server.post("/answer", {"question": question, "k": 3, "mode": "vector"}).json()
    again = server.post("/answer", {"question": question + "  ", "k": 3, "mode": "vector"}).json()
    other_k = server.post("/answer", {"question": question, "k": 2, "mode": "vector"}).json()
    unrelated = server.post("/answer", {"question": "How to delete my Facebook account?", "k": 3, "mode": "vector"}).json()
    assert first["cached"] is False and again["cached"] is True and other_k["cached"] is False and unrelated["cached"] is False
    assert again["answers"] == first["answers"]
    metrics = server.get("/metrics").text
    assert 'recqa_answer_cache_lookups_total{result="hit"}' in metrics
    assert 'recqa_served_table_version{table="answers"}' in metrics


def test_version_names_tables_model_and_index_parameters(server, warehouse):
    response = server.get("/version")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["model"] == "all-MiniLM-L6-v2"
    assert body["tables"] == {name: published_version(str(warehouse), name) for name in ("users", "items", "answers")}
    assert body["indexes"]["items.vector"]["distance_type"] == "dot"
    assert body["indexes"]["answers.vector"]["distance_type"] == "cosine"
    assert body["encoder"] == {"backend": "torch", "batch_precision": "fp32", "threads": 1, "max_batch": MAX_BATCH_SIZE,
                               "lanes": encoder_lanes(1), "workers": 1}  # the in-process tests run PyTorch (conftest.in_process)
    search = body["answer_search"]  # the bundled answers fit in memory, and build-qa's index scores as memory does
    assert search["path"] == "memory" and search["keyword_search"] == "in memory" and "equal to Lance's index" in search["keyword_reason"]
    items = body["item_search"]  # 101 items: no content index, so an exact search in memory
    assert items["path"] == "memory" and items["vector_search"] == "exact in memory" and items["rows"] == 101
    assert server.get("/docs.json").status_code == 200 and server.get("/healthz").status_code == 200
