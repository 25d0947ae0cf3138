"""Hostile input against the service with both tokens set: sizes, odd text, tokens, fuzzing.

In-process through the service's ASGI app (the guard, BentoML's middlewares and the front door
included), one service instance for the module. RECQA_API_TOKEN is set, so every call here
carries it except where the test is about leaving it out.
"""

from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

from tests.serving.conftest import in_process
from registry.log import published_version

pytestmark = pytest.mark.slow

# Random per run, so finding one in the log can only mean it was logged.
ADMIN_TOKEN = f"admin-{uuid.uuid4().hex}"
API_TOKEN = f"api-{uuid.uuid4().hex}"
MAX_BODY_BYTES = 1 << 20  # the documented default, left unset on the server
FUZZ_EXAMPLES = 50  # per operation and mode


class Client:
    """Calls the service with the API token unless told otherwise."""

    def __init__(self, http: TestClient) -> None:
        self.http = http

    def post(self, route: str, body=None, token: str | None = API_TOKEN, data=None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kwargs.pop("headers", {}))
        if data is not None:
            return self.http.post(route, content=data, headers=headers, **kwargs)
        return self.http.post(route, json=body, headers=headers, **kwargs)

    def get(self, route: str, token: str | None = API_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.get(route, headers=headers)


@pytest.fixture(scope="module")
def guarded(service_app, warehouse):
    with in_process(service_app, warehouse, env={"RECQA_ADMIN_TOKEN": ADMIN_TOKEN, "RECQA_API_TOKEN": API_TOKEN}) as http:
        yield http


@pytest.fixture(scope="module")
def client(guarded) -> Client:
    return Client(guarded)


def _fields(response: httpx.Response) -> set[str]:
    return set(response.json()["field"].split("."))  # the error shape names the first offending field, dotted


# --- sizes -------------------------------------------------------------------------------

def test_a_body_over_one_mebibyte_is_413_not_parsed(client):
    body = json.dumps({"question": "x" * MAX_BODY_BYTES, "k": 3}).encode()
    response = client.post("/answer", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_chunked_body_over_the_limit_is_413_too(client):
    def chunks():
        yield b'{"question": "'
        for _ in range(20):
            yield b"y" * 65_536  # 1.25 MiB in all, with no Content-Length
        yield b'"}'

    response = client.post("/answer", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_100kb_question_is_400_naming_question(client):
    response = client.post("/answer", {"question": "why " * 25_000, "k": 3})
    assert response.status_code == 400 and "question" in _fields(response)


def test_an_empty_question_is_400_naming_question(client):
    response = client.post("/answer", {"question": "", "k": 3})
    assert response.status_code == 400 and "question" in _fields(response)


@pytest.mark.parametrize("k", [0, -1, 101, 10**30, 2.5, "many", None])
@pytest.mark.parametrize(("route", "body"), [("/recommend", {"user_id": "u"}), ("/answer", {"question": "github"})])
def test_out_of_range_k_is_400_naming_k(client, route, body, k):
    response = client.post(route, {**body, "k": k})
    assert response.status_code == 400 and "k" in _fields(response)


# --- odd text is plain data ---------------------------------------------------------------

ODD_TEXT = [
    "¿Cómo tacho texto en GitHub? 日本語のテキスト",
    "strikethrough 🙂🔥👩‍👩‍👧 text",
    "line\nbreak\ttab\rreturn\x07bell\x1bescape\x7f",
    "\u202eright-to-left override\u200b zero width",
    "' OR 1=1 --",
    "\"; DROP TABLE answers; --",
    "%s %n {0} ${jndi:ldap://x} <script>alert(1)</script>",
    "\\' \\\\ \\x00",
]


@pytest.mark.parametrize("text", ODD_TEXT)
def test_odd_questions_and_queries_are_answered(client, text):
    for mode in ("keyword", "vector", "hybrid"):
        response = client.post("/answer", {"question": text, "k": 3, "mode": mode})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["question"] == text and len(body["answers"]) <= 3
        assert all(a["doc_id"].startswith("stackfaq-") for a in body["answers"])
    search = client.post("/search_items", {"query": text, "k": 3})
    assert search.status_code == 200 and len(search.json()["items"]) == 3  # no filter: the 3 nearest


@pytest.mark.parametrize("text", ODD_TEXT)
def test_odd_ids_and_filter_values_are_looked_up_not_run(client, text):
    recommend = client.post("/recommend", {"user_id": text, "k": 4, "recent_item_ids": [text], "filters": {"exclude_item_ids": [text]}})
    assert recommend.status_code == 200, recommend.text
    assert recommend.json()["strategy"] == "popular" and len(recommend.json()["items"]) == 4  # unknown user and item
    filtered = client.post("/recommend", {"user_id": "nobody", "k": 4, "filters": {"category": [text]}})
    assert filtered.status_code == 200 and filtered.json()["items"] == []  # no such category
    answer = client.post("/answer", {"question": "github", "k": 3, "filters": {"source": [text], "tags": [text]}})
    assert answer.status_code == 200 and answer.json()["answers"] == []
    similar = client.post("/similar_items", {"item_id": text})
    assert similar.status_code == 404


def test_a_nul_in_a_filter_value_is_400_naming_the_field(client):
    response = client.post("/recommend", {"user_id": "nobody", "k": 3, "filters": {"category": ["a\x00b"]}})
    assert response.status_code == 400 and "category" in _fields(response)
    response = client.post("/answer", {"question": "github", "filters": {"tags": ["\x00"]}})
    assert response.status_code == 400 and "tags" in _fields(response)


def test_malformed_json_is_a_4xx(client):
    for raw in (b"{", b"[]", b'{"question": "x", "k": 3', b"\xff\xfe", b"null"):
        response = client.post("/answer", data=raw, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (raw, response.status_code)


# --- tokens --------------------------------------------------------------------------------

def test_public_endpoints_need_the_api_token_but_probes_do_not(client):
    assert client.post("/recommend", {"user_id": "u", "k": 1}, token=None).status_code == 401
    assert client.post("/recommend", {"user_id": "u", "k": 1}, token=API_TOKEN[:-1]).status_code == 401
    assert client.post("/recommend", {"user_id": "u", "k": 1}, token=ADMIN_TOKEN).status_code == 401
    assert client.get("/version", token=None).status_code == 401
    assert client.post("/recommend", {"user_id": "u", "k": 1}).status_code == 200
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert client.get(probe, token=None).status_code == 200


def test_admin_endpoints_need_the_admin_token(client):
    for route in ("/admin/reload", "/admin/cache/flush"):
        for token in (None, API_TOKEN, ADMIN_TOKEN + "x", ""):
            response = client.post(route, token=token)
            assert response.status_code == 401, (route, token)
            assert ADMIN_TOKEN not in response.text and "token" not in response.text.replace("bearer token", "")


def test_admin_reload_rechecks_the_published_tag(client, warehouse):
    response = client.post("/admin/reload", token=ADMIN_TOKEN)
    assert response.status_code == 200
    expected = {name: published_version(str(warehouse), name) for name in ("users", "items", "answers")}
    assert response.json() == {"swapped": False, "tables": expected}


def test_admin_flush_empties_the_semantic_cache(client):
    question = {"question": "How do I delete my Gmail account for good?", "k": 2, "mode": "vector"}
    client.post("/answer", question)
    assert client.post("/answer", question).json()["cached"] is True
    flushed = client.post("/admin/cache/flush", token=ADMIN_TOKEN)
    assert flushed.status_code == 200 and flushed.json()["flushed"] >= 1
    assert client.post("/answer", question).json()["cached"] is False
    assert client.post("/admin/cache/flush", token=ADMIN_TOKEN).json()["flushed"] == 1  # the one just stored


def test_tokens_never_reach_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/admin/reload", token=ADMIN_TOKEN)
    client.post("/admin/reload", token=ADMIN_TOKEN + "-wrong")
    client.post("/recommend", {"user_id": API_TOKEN, "k": 1}, token=API_TOKEN + "-wrong")
    client.post("/recommend", {"user_id": "u", "k": 1})
    log = caplog.text
    assert "/admin/reload" in log or "admin reload" in log  # the requests are in the log, the tokens are not
    assert ADMIN_TOKEN not in log and API_TOKEN not in log


# --- fuzzing -------------------------------------------------------------------------------

SEARCH_APIS = {"/recommend", "/similar_items", "/search_items", "/answer"}

def _send(http: TestClient, case, token: str) -> httpx.Response:
    """A generated case sent through the in-process client (schemathesis's own ASGI transport
    would start a second service instance in this process, over the first)."""
    kwargs = case.as_transport_kwargs(base_url=str(http.base_url), headers={"Authorization": f"Bearer {token}"})
    body = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content" if isinstance(data, (bytes, str)) else "data"] = data
    if kwargs.get("files"):
        body["files"] = kwargs["files"]
    return http.request(kwargs["method"], kwargs["url"], headers=kwargs.get("headers"), params=kwargs.get("params"), cookies=kwargs.get("cookies"), **body)


# schemathesis's own pytest integration (`from_fixture`) fails on pytest 9.2 ("'Function' object
# has no attribute '_nodeid'"), so its per-operation Hypothesis strategies are driven here.
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_5xx(guarded, mode):
    spec = guarded.get("/docs.json", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
    api = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in api.get_all_operations()]
    assert SEARCH_APIS <= {op.path for op in operations}
    failures: list[str] = []
    calls: list[int] = []
    api_calls: list[int] = []  # of the four search APIs, whose valid requests all have an answer

    for operation in operations:
        if mode == schemathesis.GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to make invalid (GET /healthz, ...): Hypothesis finds no case

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case) -> None:
            # the spec lists the admin routes too: they are fuzzed with their own token
            token = ADMIN_TOKEN if case.path.startswith("/admin/") else API_TOKEN
            response = _send(guarded, case, token)
            calls.append(response.status_code)
            if case.path in SEARCH_APIS:
                api_calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code} {response.text[:200]}")

        fuzz()
    assert failures == []
    assert len(calls) >= len(operations) if mode == schemathesis.GenerationMode.POSITIVE else calls
    if mode == schemathesis.GenerationMode.NEGATIVE:
        assert any(400 <= status < 500 for status in calls)  # invalid requests were sent, and refused
    else:
        # most valid search requests were answered (random ids of GET /items/{id} are 404, and the
        # write API is absent without its token: those say nothing here)
        assert api_calls.count(200) > len(api_calls) // 2
