"""The Python client against the real server of the end-to-end tests: it returns what the
HTTP API returns, and every refusal is a RecQAError carrying the server's message.

Here rather than in tests/client/: it shares the session's real server with the other
end-to-end tests instead of starting a second one.
"""

from __future__ import annotations

import pytest

from client import RecQAClient, RecQAError
from client.recqa import ScoredAnswer, ScoredItem
from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server):
    with RecQAClient(server.base_url + "/") as recqa:  # a trailing slash is fine
        yield recqa


def _without_cache_flag(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "cached"}


def test_each_method_returns_what_the_endpoint_returns(client, server):
    pairs = [
        (client.recommend("no-such-user", 3), server.post("/recommend", {"user_id": "no-such-user", "k": 3})),
        (
            client.recommend("no-such-user", 4, recent_item_ids=["DAF-00502"], exclude_item_ids=["DAF-00502"]),
            server.post("/recommend", {"user_id": "no-such-user", "k": 4, "recent_item_ids": ["DAF-00502"], "filters": {"exclude_item_ids": ["DAF-00502"]}}),
        ),
        (client.similar_items("DAF-00502", 3, signal="content"), server.post("/similar_items", {"item_id": "DAF-00502", "k": 3, "signal": "content"})),
        (client.search_items("keyboard", 3), server.post("/search_items", {"query": "keyboard", "k": 3})),
    ]
    for got, response in pairs:
        assert response.status_code == 200
        assert got == response.json()
    answered = client.answer("How do I cross out text on github?", 3, mode="vector", diversity=0.5)
    direct = server.post("/answer", {"question": "How do I cross out text on github?", "k": 3, "mode": "vector", "diversity": 0.5})
    assert _without_cache_flag(answered) == _without_cache_flag(direct.json())  # one of the two may come from the cache
    assert len(answered["answers"]) == 3
    assert pairs[1][0]["strategy"] == "fold_in" and "DAF-00502" not in [i["item_id"] for i in pairs[1][0]["items"]]
    # the client's types name exactly the fields the server sends
    assert set(pairs[0][0]["items"][0]) == set(ScoredItem.__annotations__)
    assert set(answered["answers"][0]) == set(ScoredAnswer.__annotations__)


def test_version_says_what_is_served(client, server):
    assert client.version() == server.get("/version").json()
    assert client.version()["ready"] is True


def test_a_bad_request_raises_with_the_servers_message_naming_the_field(client):
    with pytest.raises(RecQAError) as raised:
        client.recommend("someone", k=0)
    assert raised.value.status == 400 and raised.value.field == "k"
    assert "k" in raised.value.message and "greater than or equal to 1" in raised.value.message


def test_an_unknown_item_raises_404_naming_it(client):
    with pytest.raises(RecQAError) as raised:
        client.similar_items("no-such-item")
    assert raised.value.status == 404
    assert "no-such-item" in raised.value.message


def test_a_filter_the_server_refuses_names_its_field(client):
    with pytest.raises(RecQAError) as raised:
        client.answer("anything", tags=["a\x00b"])
    assert raised.value.status == 400 and "tags" in raised.value.message


def test_an_unreachable_server_raises_without_a_status():
    with RecQAClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere:
        with pytest.raises(RecQAError) as raised:
            nowhere.version()
    assert raised.value.status is None and "/version" in raised.value.message
