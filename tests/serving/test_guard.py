"""The front-door policy and middleware, in-process around a tiny echo app (no BentoML)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.guard import DEFAULT_MAX_BODY_BYTES, GuardMiddleware, GuardSettings, access_status, bearer_matches

ADMIN, API, INGEST = "admin-secret-7f3a", "api-secret-91c2", "ingest-secret-0b44"


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"path": request.url.path, "bytes": len(body), "head": body[:8].decode("latin-1")})


def _echo_app() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", _echo, methods=["GET", "POST"])])


def _client(settings: GuardSettings) -> TestClient:
    return TestClient(GuardMiddleware(_echo_app(), settings))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("header", "token", "expected"),
    [
        (f"Bearer {API}", API, True),
        (f"bearer {API}", API, True),  # the scheme is case-insensitive (RFC 7235)
        (f"Bearer {API} ", API, True),
        (f"Bearer {API}x", API, False),
        (f"Basic {API}", API, False),
        (API, API, False),
        ("Bearer ", "", False),  # no token configured never matches, even an empty one
        (None, API, False),
        ("", API, False),
    ],
)
def test_bearer_matches_only_the_exact_token(header, token, expected):
    assert bearer_matches(header, token) is expected


@pytest.mark.parametrize(
    ("path", "header", "settings", "expected"),
    [
        ("/admin/reload", f"Bearer {ADMIN}", GuardSettings(), 404),  # no admin token: no admin API
        ("/admin/reload", None, GuardSettings(admin_token=ADMIN), 401),
        ("/admin/cache/flush", f"Bearer {API}", GuardSettings(admin_token=ADMIN, api_token=API), 401),
        ("/admin/cache/flush", f"Bearer {ADMIN}", GuardSettings(admin_token=ADMIN, api_token=API), None),
        ("/answer", None, GuardSettings(admin_token=ADMIN), None),  # no API token: public stays open
        ("/answer", None, GuardSettings(api_token=API), 401),
        ("/answer", f"Bearer {ADMIN}", GuardSettings(admin_token=ADMIN, api_token=API), 401),
        ("/answer", f"Bearer {API}", GuardSettings(api_token=API), None),
        ("/docs.json", None, GuardSettings(api_token=API), None),  # the docs stay open: a browser sends no token
        ("/docs", None, GuardSettings(api_token=API), None),
        ("/openapi.json", None, GuardSettings(api_token=API), None),
        ("/items/x", None, GuardSettings(api_token=API), 401),  # the lookups are guarded like the APIs
        ("/static_content/index.html", None, GuardSettings(api_token=API), 401),
        ("/healthz", None, GuardSettings(api_token=API), None),
        ("/ingest/items", f"Bearer {INGEST}", GuardSettings(admin_token=ADMIN, api_token=API), 404),  # no ingest token: no write API
        ("/ingest", None, GuardSettings(), 404),
        ("/ingest/delete", None, GuardSettings(ingest_token=INGEST), 401),
        ("/ingest/delete", f"Bearer {API}", GuardSettings(api_token=API, ingest_token=INGEST), 401),
        ("/ingest/events", f"Bearer {ADMIN}", GuardSettings(admin_token=ADMIN, ingest_token=INGEST), 401),
        ("/ingest/events", f"Bearer {INGEST}", GuardSettings(api_token=API, ingest_token=INGEST), None),
        ("/admin/reload", f"Bearer {INGEST}", GuardSettings(admin_token=ADMIN, ingest_token=INGEST), 401),
        ("/answer", f"Bearer {INGEST}", GuardSettings(api_token=API, ingest_token=INGEST), 401),
        ("/readyz", None, GuardSettings(api_token=API), None),
        ("/metrics", None, GuardSettings(api_token=API), None),
    ],
)
def test_access_policy(path, header, settings, expected):
    assert access_status(path, header, settings) == expected


def test_a_body_over_the_limit_is_413_and_one_at_it_passes_whole():
    client = _client(GuardSettings(max_body_bytes=1_000))
    assert client.post("/answer", content=b"x" * 1_001).status_code == 413
    passed = client.post("/answer", content=b"{" + b"y" * 999)
    assert passed.status_code == 200 and passed.json() == {"path": "/answer", "bytes": 1_000, "head": "{yyyyyyy"}


def test_a_chunked_body_without_content_length_is_counted_as_it_arrives():
    client = _client(GuardSettings(max_body_bytes=1_000))

    def chunks(n: int):
        for _ in range(n):
            yield b"z" * 300

    assert client.post("/answer", content=chunks(4)).status_code == 413
    passed = client.post("/answer", content=chunks(3))
    assert passed.status_code == 200 and passed.json()["bytes"] == 900


def test_the_default_limit_is_one_mebibyte(monkeypatch):
    monkeypatch.delenv("RECQA_MAX_BODY_BYTES", raising=False)
    assert GuardSettings.from_env().max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1_048_576
    monkeypatch.setenv("RECQA_MAX_BODY_BYTES", "2048")
    assert GuardSettings.from_env().max_body_bytes == 2048
    monkeypatch.setenv("RECQA_MAX_BODY_BYTES", "0")
    with pytest.raises(ValueError, match="RECQA_MAX_BODY_BYTES"):
        GuardSettings.from_env()


def test_refusals_say_nothing_about_the_token():
    client = _client(GuardSettings(admin_token=ADMIN, api_token=API))
    wrong = client.post("/answer", json={"q": 1}, headers=_bearer(ADMIN[:-1]))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert ADMIN not in wrong.text and ADMIN[:-1] not in wrong.text and API not in wrong.text
    assert client.post("/answer", json={"q": 1}, headers=_bearer(API)).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.post("/admin/reload", headers=_bearer(ADMIN)).status_code == 200
    assert client.post("/admin/reload", headers=_bearer(API)).status_code == 401


def test_admin_routes_are_404_without_an_admin_token():
    client = _client(GuardSettings())
    response = client.post("/admin/cache/flush", headers=_bearer("anything"))
    assert response.status_code == 404 and response.json() == {"error": "not found", "field": None, "status": 404}
    assert client.post("/answer", json={}).status_code == 200


def test_api_bodies_must_be_json_or_unlabelled_and_others_get_415_naming_the_header():
    client = TestClient(GuardMiddleware(_echo_app(), GuardSettings(), json_routes=frozenset({"/answer"})))
    for content_type in (None, "application/json", "application/json; charset=utf-8", "text/plain"):
        headers = {"Content-Type": content_type} if content_type else {}
        assert client.post("/answer", content=b"{}", headers=headers).status_code == 200, content_type
    form = client.post("/answer", content=b"q=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert form.json()["field"] == "Content-Type" and "application/json" in form.json()["error"]


def test_the_ingest_token_is_read_from_its_own_variable(monkeypatch):
    monkeypatch.delenv("RECQA_INGEST_TOKEN", raising=False)
    assert GuardSettings.from_env().ingest_token == ""
    monkeypatch.setenv("RECQA_INGEST_TOKEN", INGEST)
    monkeypatch.setenv("RECQA_API_TOKEN", API)
    settings = GuardSettings.from_env()
    assert (settings.ingest_token, settings.api_token) == (INGEST, API)


def test_settings_from_the_environment_are_read_again_at_each_app_start(monkeypatch):
    """An app built once (as the in-process tests build the service's) guards each start with that start's variables."""
    monkeypatch.delenv("RECQA_API_TOKEN", raising=False)
    app = GuardMiddleware(_echo_app())
    with TestClient(app) as client:
        assert client.post("/answer", json={}).status_code == 200
    monkeypatch.setenv("RECQA_API_TOKEN", API)
    with TestClient(app) as client:
        assert client.post("/answer", json={}).status_code == 401
        assert client.post("/answer", json={}, headers=_bearer(API)).status_code == 200
    monkeypatch.setenv("RECQA_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValueError, match="RECQA_MAX_BODY_BYTES='lots'"):  # a bad variable fails the start
        with TestClient(app):
            pass
