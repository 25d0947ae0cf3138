"""The outermost ASGI layer of the service: bounded metric labels, one error shape, one log line per error.

BentoML's request metrics label each request with its path, so every path a scanner tries (and
every id in `/items/{item_id}`) would become a Prometheus series of its own. This layer runs
outside BentoML's metrics middleware (it wraps the app `to_asgi` builds) and hands the request
on with its route's template as the path (`unknown` when no route serves it), which BentoML's
metrics (and its tracing and access log, when they are on) then see; `RestorePath` restores
the requested path before routing, so a request is answered exactly as before.

Every response of status 400 or more leaves in the shape of `serving.errors` and is logged here
once: 4xx at INFO without a traceback (the caller's mistake), 5xx at ERROR.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles

from serving.errors import install_client_error_filter, shape_error
from serving.guard import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

UNKNOWN_PATH = "unknown"  # the metric label of every request no route serves
REQUESTED_PATH = "recqa.requested_path"  # scope key: the path as the client sent it


def route_label(routes: list[Any], scope: Scope) -> str:
    """The metric label of a request: its route's path template (`/items/{item_id:path}`, so ids do
    not become labels either), the file's path under a static mount, else `unknown`."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            if isinstance(route.app, StaticFiles):
                _, found = route.app.lookup_path(child.get("path_params", {}).get("path", "").lstrip("/"))
                if found is None:
                    continue
                return scope["path"]
            inner = route_label(getattr(route.app, "routes", []), {**scope, **child})
            if inner == UNKNOWN_PATH:
                continue
            return route.path + inner
        return route.path
    return UNKNOWN_PATH


def without_unexported_tracing(app: Starlette, exporter: str | None) -> Starlette:
    """`app`, a Starlette app not yet started, without OpenTelemetry's ASGI middleware when no
    trace exporter is configured (`exporter`: BentoML's `tracing.exporter_type`).

    BentoML installs the middleware on every service. With no exporter (BentoML's default) no
    span ever leaves the process, yet it makes a server span and one per message sent or received
    on every request, on the event loop that every request shares: without it the service
    answered 1.45x the `/recommend` and 1.21x the `/answer` requests a second at concurrency 32
    (benchmarks/RESULTS.md, "Serving, twelfth run"). With an exporter set it stays.
    """
    if exporter:
        return app
    app.user_middleware = [middleware for middleware in app.user_middleware if middleware.cls is not OpenTelemetryMiddleware]
    app.middleware_stack = None  # built again from the list on the first request
    return app


class FrontDoor:
    """Wraps the whole app: unknown paths as one label, error bodies in one shape, errors logged once."""

    def __init__(self, app: ASGIApp, direct: Mapping[str, ASGIApp] | None = None) -> None:
        self.app = app
        self.direct = dict(direct or {})  # path prefix -> the app its requests go to, past BentoML's layers
        install_client_error_filter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        requested = scope.get("path", "")
        for prefix, app in self.direct.items():
            if requested.startswith(prefix):
                await app(scope, receive, _ShapingSend(send, scope.get("method", ""), requested))
                return
        # BentoML's metrics (tracing, access log: when on) see the label; RestorePath, the first of the
        # service's own middlewares, puts the requested path back before anything routes on it.
        labelled = {**scope, "path": route_label(getattr(self.app, "routes", []), scope), REQUESTED_PATH: requested}
        await self.app(labelled, receive, _ShapingSend(send, scope.get("method", ""), requested))


class RestorePath:
    """Gives routing (and GuardMiddleware) the path the client asked for again, after the metrics saw its label."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if REQUESTED_PATH in scope:
            scope = {**scope, "path": scope[REQUESTED_PATH]}
        await self.app(scope, receive, send)


class _ShapingSend:
    """A `send` that holds back an error response until its body is complete, then reshapes it."""

    def __init__(self, send: Send, method: str, path: str) -> None:
        self._send, self._method, self._path = send, method, path
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        await self._finish()

    async def _finish(self) -> None:
        assert self._start is not None
        status = int(self._start["status"])
        headers = [(k, v) for k, v in self._start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        lookup = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._start.get("headers", [])}
        body = shape_error(
            status, b"".join(self._chunks), lookup.get("content-type", ""), self._method, self._path, lookup.get("allow", "")
        )
        payload = json.dumps(body).encode()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        level = logging.INFO if status < 500 else logging.ERROR
        field = f" [field {body['field']}]" if body.get("field") else ""
        logger.log(level, "%d %s %s%s: %s", status, self._method, self._path, field, body["error"])
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": payload, "more_body": False})
