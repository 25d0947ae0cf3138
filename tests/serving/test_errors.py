"""The error shape, the metric labels and the tracing layer, without a service: BentoML's, Starlette's and our bodies in, one shape out."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from serving.api import AnswerRequest, RecommendRequest
from serving.errors import ClientErrorLogFilter, shape_error
from serving.front import UNKNOWN_PATH, FrontDoor, RestorePath, route_label, without_unexported_tracing


def _bentoml_validation_body(model, body: dict) -> bytes:
    """The 400 body BentoML's api_endpoint_wrapper builds from a pydantic error, as it builds it."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return json.dumps(
            {"error": f"{exc.error_count()} validation error for {exc.title}IODescriptor", "detail": exc.errors(include_context=False, include_input=False)}
        ).encode()
    raise AssertionError("expected a validation error")


def test_validation_errors_name_the_nested_field_without_class_names_or_urls():
    body = _bentoml_validation_body(RecommendRequest, {"user_id": "u", "filters": {"category": ["a\x00b"]}})
    shaped = shape_error(400, body, "application/json", "POST", "/recommend")
    assert set(shaped) == {"error", "field", "status"} and shaped["status"] == 400
    assert shaped["field"] == "filters.category.0"
    assert "NUL" in shaped["error"] and "IODescriptor" not in shaped["error"] and "pydantic.dev" not in json.dumps(shaped)


def test_a_question_of_only_whitespace_is_refused_naming_question():
    shaped = shape_error(400, _bentoml_validation_body(AnswerRequest, {"question": " \t\n "}), "application/json", "POST", "/answer")
    assert shaped["field"] == "question" and "whitespace" in shaped["error"]


def test_bentoml_list_bodies_and_starlette_text_become_the_shape():
    listed = shape_error(404, b'[{"error": "item_id: unknown"}]', "application/json", "POST", "/similar_items")
    assert listed == {"error": "item_id: unknown", "field": None, "status": 404}
    routed = shape_error(404, b"Not Found", "text/plain", "GET", "/nope")
    assert routed["status"] == 404 and "/nope" in routed["error"]
    method = shape_error(405, b"Method Not Allowed", "text/plain", "GET", "/recommend", allow="POST")
    assert method["error"].endswith("use POST")
    server = shape_error(500, b'{"error": "An unexpected error has occurred, please check the server log."}', "application/json", "POST", "/x")
    assert server["status"] == 500 and server["field"] is None


def test_an_already_shaped_body_keeps_its_extra_keys():
    body = {"error": "no users table", "field": None, "status": 503, "missing_tables": ["users"]}
    assert shape_error(503, json.dumps(body).encode(), "application/json", "POST", "/recommend") == body


def _app() -> Starlette:
    inner = Starlette(routes=[Route("/items/{item_id:path}", lambda r: PlainTextResponse(r.path_params["item_id"]))])
    app = Starlette(routes=[Route("/recommend", lambda r: PlainTextResponse("ok"), methods=["POST"]), Mount("", inner)])
    app.add_middleware(RestorePath)
    return app


def test_route_labels_are_templates_and_unknown_paths_one_label():
    app = _app()
    scope = {"type": "http", "method": "GET", "root_path": ""}
    assert route_label(app.routes, {**scope, "path": "/recommend"}) == "/recommend"  # a method mismatch is still the route
    assert route_label(app.routes, {**scope, "path": "/items/abc/def"}) == "/items/{item_id:path}"
    assert route_label(app.routes, {**scope, "path": "/wp-login.php"}) == UNKNOWN_PATH


def test_the_front_door_routes_on_the_requested_path_and_shapes_its_404():
    client = TestClient(FrontDoor(_app()))
    assert client.get("/items/a/b").text == "a/b"  # RestorePath gave routing the real path back
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"].startswith("no route GET /nope")


def test_a_direct_prefix_goes_straight_to_its_app_and_its_errors_are_shaped():
    """The write API's requests skip BentoML's layers (serving/service.py): FrontDoor hands them to their own app."""
    seen = []

    async def writes(scope, receive, send):
        seen.append(scope["path"])
        status = 200 if scope["path"] == "/ingest/items" else 404
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"written" if status == 200 else b"gone"})

    client = TestClient(FrontDoor(_app(), {"/ingest/": writes}))
    assert client.post("/ingest/items").text == "written" and client.get("/items/x").text == "x"  # the rest as before
    missing = client.post("/ingest/nope")
    assert missing.status_code == 404 and missing.json()["status"] == 404  # in the one error shape
    assert seen == ["/ingest/items", "/ingest/nope"]


def test_client_errors_are_filtered_from_bentomls_log_and_server_errors_kept():
    from bentoml.exceptions import InternalServerError, NotFound

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on /x", (), (type(exc), exc, None))

    log_filter = ClientErrorLogFilter()
    try:
        RecommendRequest.model_validate({})
    except ValidationError as exc:
        assert not log_filter.filter(record(exc))
    assert not log_filter.filter(record(NotFound("gone")))
    assert log_filter.filter(record(InternalServerError("boom")))
    assert log_filter.filter(record(RuntimeError("boom")))


@pytest.mark.parametrize(("exporter", "traced"), [(None, False), ("", False), ("otlp", True)])
def test_requests_are_traced_only_when_a_trace_exporter_is_configured(exporter, traced):
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = Starlette(routes=[Route("/ok", lambda request: PlainTextResponse("ok"))])
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    with TestClient(without_unexported_tracing(app, exporter)) as client:
        assert client.get("/ok").text == "ok"
    assert bool(spans.get_finished_spans()) is traced
