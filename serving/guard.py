"""Front-door checks every HTTP request passes before BentoML sees it: body size and tokens.

One pure policy (`access_status`) decides who may call what, so it is tested without a server;
`GuardMiddleware` applies it and the body limit as a plain ASGI middleware, which BentoML
installs outside its own request handling, so a refusal never reaches the handlers. Tokens are
compared in constant time and never logged or echoed. Refusals are in the error shape of
`serving.errors` and logged once, by the front door (`serving.front`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.errors import error_body
from serving.settings import DEFAULT_MAX_BODY_BYTES, ENV_MAX_BODY_BYTES, GuardSettings

__all__ = ["DEFAULT_MAX_BODY_BYTES", "GuardMiddleware", "GuardSettings", "access_status", "bearer_matches"]

ADMIN_PREFIX = "/admin/"
INGEST_PREFIX = "/ingest/"  # the write API (ingest/routes.py): its own token, never the API's or the admin's
# Probes and scrapes stay open when RECQA_API_TOKEN is set: orchestrators call them without one.
# The docs page and the spec stay open too: a browser cannot send a bearer token, and the spec
# says nothing the API itself does not.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs", "/openapi.json", "/docs.json"})
# A body without a Content-Type, or sent as text/plain (curl -d, fetch without headers), is read
# as JSON, as BentoML does; forms, multipart and pickles are refused with 415 saying what to send.
JSON_MEDIA_TYPES = frozenset({"", "application/json", "text/plain"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when the header is `Bearer <token>`; constant-time, and never for an empty token."""
    if not token or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def access_status(path: str, authorization: str | None, settings: GuardSettings) -> int | None:
    """None when the request may go on, else the status to refuse it with (401, or 404 for a disabled admin or write API)."""
    for prefix, token in ((ADMIN_PREFIX, settings.admin_token), (INGEST_PREFIX, settings.ingest_token)):
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            if not token:
                return 404
            return None if bearer_matches(authorization, token) else 401
    if not settings.api_token or path in OPEN_PATHS:
        return None
    return None if bearer_matches(authorization, settings.api_token) else 401


class BodyTooLarge(Exception):
    """The request body went past the limit while being read."""


class GuardMiddleware:
    """Refuses oversized bodies (413), requests without the right token (401/404) and API bodies that are not JSON (415)."""

    def __init__(self, app: ASGIApp, settings: GuardSettings | None = None, json_routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.json_routes = json_routes  # the POST routes whose body is JSON (the BentoML APIs, the write API)
        # Read when BentoML builds the app in the worker, not at import, and again when the app
        # starts (lifespan): an app built once serves each start with that start's environment.
        self._from_env = settings is None
        self.settings = settings if settings is not None else GuardSettings.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._from_env:
            self.settings = GuardSettings.from_env()
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status = access_status(scope.get("path", ""), headers.get("authorization"), self.settings)
        if status is not None:
            # Say nothing about the token: only that one is needed (401) or that nothing is here (404).
            detail = "not found" if status == 404 else "missing or invalid bearer token"
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _respond(send, status, detail, "Authorization" if status == 401 else None, extra)
            return
        if scope.get("method") == "POST" and scope.get("path") in self.json_routes:
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
                await _respond(send, 415, f"Content-Type {media_type} is not accepted: send the body as JSON with Content-Type: application/json", "Content-Type")
                return
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _respond(send, 413, f"request body over {limit} bytes: send a smaller body (the limit is {ENV_MAX_BODY_BYTES})")
            return
        try:
            body = await _read_body(receive, limit)
        except BodyTooLarge:
            await _respond(send, 413, f"request body over {limit} bytes: send a smaller body (the limit is {ENV_MAX_BODY_BYTES})")
            return
        if body is None:  # the client went away before sending it all: no one to answer
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (chunked or not), stopping as soon as it passes `limit`; None on disconnect."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then whatever the client sends next (disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(
    send: Send, status: int, detail: str, field: str | None = None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(error_body(status, detail, field)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
