"""One error shape for every 4xx and 5xx: `{"error": message, "field": name or null, "status": code}`.

Errors come from several places: the handlers and GuardMiddleware (which build this shape
themselves), BentoML's request validation (a pydantic error list naming its internal
`...IODescriptor` class, with pydantic URLs), BentoML's exception handling (a 4xx body that is a
JSON list) and Starlette's routing (plain text). `shape_error` turns any of them into the one
shape, so a client parses one thing; `ClientErrorLogFilter` keeps BentoML from logging a
client's mistake as a server error with a traceback.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

# The logger BentoML's `log_exception` writes every failed API call to (at ERROR, with a traceback).
BENTOML_API_LOGGER = "bentoml._internal.server.http_app"
JSON_HINT = "send a JSON object with Content-Type: application/json"


def error_body(status: int, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The error shape; `extra` adds endpoint-specific keys (e.g. `missing_tables`) after the three."""
    return {"error": message, "field": field, "status": status, **extra}


def error_response(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, field, **extra), status_code=status)


def is_shaped(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), str) and "field" in body and body.get("status") is not None


def validation_error(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A message naming each offending field (pydantic's `loc`, dotted) and the field of the first.

    pydantic's texts already say what is expected ("Input should be less than or equal to 100");
    unknown fields and unparseable bodies get a sentence saying what to send instead.
    """
    parts: list[str] = []
    for error in errors:
        loc = ".".join(str(part) for part in error.get("loc", ()))
        kind = error.get("type", "")
        text = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            text = "unknown field: remove it or check its spelling (the fields are listed at /docs.json)"
        elif kind == "json_invalid":
            text = f"the body is not valid JSON ({text}): {JSON_HINT}"
        elif kind == "model_type" or (kind == "dict_type" and not loc):
            text = f"the body must be a JSON object: {JSON_HINT}"
        parts.append(f"{loc}: {text}" if loc else text)
    first = errors[0].get("loc", ()) if errors else ()
    field = ".".join(str(part) for part in first) or None
    return "; ".join(parts) or "invalid request", field


def shape_error(status: int, body: bytes, content_type: str, method: str, path: str, allow: str = "") -> dict[str, Any]:
    """Any error body the app produced, in the one shape (one already shaped is kept as is)."""
    parsed: Any = None
    if "json" in content_type:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
    if is_shaped(parsed):
        return parsed
    if isinstance(parsed, list) and len(parsed) == 1 and isinstance(parsed[0], dict):
        parsed = parsed[0]  # BentoML wraps the message of its 4xx exceptions in a list
    if isinstance(parsed, dict) and isinstance(parsed.get("detail"), list):  # BentoML's pydantic errors
        message, field = validation_error(parsed["detail"])
        return error_body(status, message, field)
    if status == 404 and not isinstance(parsed, dict):
        return error_body(status, f"no route {method} {path}: the endpoints are listed at /docs.json")
    if status == 405:
        use = f": use {allow}" if allow else ""
        return error_body(status, f"{method} is not allowed on {path}{use}")
    if isinstance(parsed, dict):
        message = parsed.get("error") or parsed.get("reason") or parsed.get("detail")
        extra = {k: v for k, v in parsed.items() if k not in ("error", "field", "status", "detail")}
        return error_body(status, str(message or _phrase(status)), parsed.get("field"), **extra)
    text = body.decode("utf-8", "replace").strip() if body else ""
    return error_body(status, text or _phrase(status))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"error {status}"


def client_status(exc: BaseException | None) -> int | None:
    """The 4xx BentoML answers an exception with, or None when it is a server error."""
    if exc is None:
        return None
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    from bentoml.exceptions import BentoMLException

    if isinstance(exc, BentoMLException):
        status = int(exc.error_code.value)
        return status if 400 <= status < 500 else None
    return None


class ClientErrorLogFilter(logging.Filter):
    """Drops BentoML's ERROR-with-traceback record of a client error (bad body, unknown id).

    The front door logs every error response once, 4xx at INFO; a traceback of the caller's
    mistake in the server log at ERROR hides the real failures. Server errors pass untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return client_status(exc) is None


def install_client_error_filter() -> None:
    """Attach the filter to BentoML's API logger once per process."""
    target = logging.getLogger(BENTOML_API_LOGGER)
    if not any(isinstance(existing, ClientErrorLogFilter) for existing in target.filters):
        target.addFilter(ClientErrorLogFilter())
