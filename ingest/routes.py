"""The write API's routes: POST /ingest/items, /ingest/answers, /ingest/events, /ingest/delete.

Partial acceptance: every record is checked on its own (the builds' adapters, via
`features.changes`); the good ones are written and the bad ones listed by index with the field
at fault, in a 200. When no record of a request is good, nothing is written and the answer is
a 422 in the service's error shape with the same `rejected` list. A body that is not an
object, has an unknown key or more than MAX_RECORDS_PER_REQUEST records is a 400 naming the
field. Deleting an id that does not exist is accepted: the delete is kept as a tombstone, so
a later batch build whose input files still hold the id drops it too.

An answer is sent only once the commit holding the request's records has returned (durable,
read back); a failed commit is a 503 and nothing of the request is acknowledged. The route
handlers are async and wait on the writer's future, so waiting requests hold no thread.
The token check is GuardMiddleware's (RECQA_INGEST_TOKEN), before any of this runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from features.changes import ANSWERS, EVENTS, ITEMS, USERS, Change, parse_deletes, parse_records
from features.errors import InputError
from ingest.api import BODIES, MAX_RECORDS_PER_REQUEST, IngestDelete, IngestResult
from ingest.writer import BatchingWriter, Commit, CommitFailed, CommitTimings, WriterClosed
from serving.errors import JSON_HINT, error_response, validation_error

INGEST_PREFIX = "/ingest/"
INGEST_TAG = "Ingest"
# The read side's target for showing an acknowledged write (the 2 s p95): the service
# overlays the change log on the served release at least this often.
VISIBLE_WITHIN_SECONDS = 2.0
# on each answer made in the ingest process (ingest/process.py): the commit's version and timings, for the service's /metrics
COMMIT_HEADER = "x-recqa-commit"


class IngestEndpoints:
    """The four routes and the process's one BatchingWriter, made on the first write.

    `warehouse` is asked only then, so building the app reads no settings and starts no thread.
    `before_commit`, set by the ingest process before its first write, is run by the writer on
    each commit's changes before the commit and returns them to commit (with their texts' vectors).
    """

    def __init__(self, warehouse: Callable[[], str], make_writer: Callable[[str], BatchingWriter] = BatchingWriter.for_warehouse,
                 timings_header: bool = False) -> None:
        self._warehouse = warehouse
        self._make_writer = make_writer
        self._timings_header = timings_header  # the ingest process tells the service its commits (COMMIT_HEADER)
        self._writer: BatchingWriter | None = None
        self._lock = threading.Lock()
        self.before_commit: Callable[[Sequence[Change]], Sequence[Change] | None] | None = None

    def writer(self) -> BatchingWriter:
        with self._lock:
            if self._writer is None:
                self._writer = self._make_writer(self._warehouse())
                self._writer.before_commit = self.before_commit
            return self._writer

    def close(self) -> None:
        """Commit what is queued and stop the writer (service shutdown); the next write starts a new one."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def routes(self) -> list[Route]:
        return [Route(f"{INGEST_PREFIX}{name}", self._endpoint(name), methods=["POST"]) for name in BODIES]

    def _endpoint(self, name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return await self.respond(name, await request.body())

        return described(endpoint, name)

    async def respond(self, name: str, raw: bytes) -> JSONResponse:
        """The answer to a write to route `name` whose body is `raw` (what each route does)."""
        body = _parse(raw, BODIES[name])
        if isinstance(body, JSONResponse):
            return body
        changes, rejected = _changes(name, body)
        return await self._write(changes, rejected)

    async def _write(self, changes: list[Change], rejected: list[dict[str, Any]]) -> JSONResponse:
        if not changes:
            first = rejected[0]
            return error_response(
                422, f"no record was accepted: {first['field'] or 'record'} of record {first['index']}: {first['reason']}",
                first["field"], accepted=0, rejected=rejected,
            )
        try:
            commit = await asyncio.wrap_future(self.writer().submit(changes))
        except (CommitFailed, WriterClosed) as error:
            return error_response(503, str(error))
        except Exception as error:  # noqa: BLE001 - e.g. the warehouse cannot be opened: say why, acknowledge nothing
            return error_response(503, f"not written ({type(error).__name__}: {error}); send it again")
        result = IngestResult(
            accepted=len(changes), rejected=rejected, version=commit.version,
            visible_by=(commit.at + timedelta(seconds=VISIBLE_WITHIN_SECONDS)).isoformat(timespec="milliseconds"),
        )
        headers = {COMMIT_HEADER: commit_header(commit)} if self._timings_header and commit.timings is not None else None
        return JSONResponse(result.model_dump(), headers=headers)


def described(endpoint: Callable[[Request], Any], name: str) -> Callable[[Request], Any]:
    """`endpoint` named and described as the write API's route `name` (serving/docs.py reads `openapi`)."""
    endpoint.__name__ = f"ingest_{name}"
    endpoint.__doc__ = DESCRIPTIONS[name]
    endpoint.openapi = _openapi(BODIES[name])  # type: ignore[attr-defined]
    return endpoint


def commit_header(commit: Commit) -> str:
    """The COMMIT_HEADER value of a commit: its version and timings, as JSON."""
    return json.dumps({"version": commit.version, **dataclasses.asdict(commit.timings)})


def commit_of_header(value: str) -> tuple[int, CommitTimings]:
    """The version and timings a COMMIT_HEADER holds (`commit_header`'s inverse)."""
    fields = json.loads(value)
    return int(fields.pop("version")), CommitTimings(**fields)


DESCRIPTIONS = {
    "items": "Insert or replace catalogue items (by `item_id`). Good records are written even when others are rejected "
    "(listed by index); 422 when none is good. Answers once the write is durable. Needs `RECQA_INGEST_TOKEN`.",
    "answers": "Insert or replace answer documents (by `doc_id`, all their chunks). Good records are written even when "
    "others are rejected; 422 when none is good. Answers once the write is durable. Needs `RECQA_INGEST_TOKEN`.",
    "events": "Add users' events (`user_id`, `item_id`, `timestamp`). Good records are written even when others are "
    "rejected; 422 when none is good. Answers once the write is durable. Needs `RECQA_INGEST_TOKEN`.",
    "delete": "Delete items and answer documents, and forget users, by id. An id not known yet is kept as a tombstone "
    "(a later build drops it too). Answers once the write is durable. Needs `RECQA_INGEST_TOKEN`.",
}


def _parse(raw: bytes, model: type[BaseModel]) -> BaseModel | JSONResponse:
    """The body as `model`, or a 400 in the error shape naming the field (an unknown key first)."""
    try:
        data = json.loads(raw or b"null")
    except ValueError as error:
        return error_response(400, f"the body is not valid JSON ({error}): {JSON_HINT}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = sorted(error.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        message, field = validation_error(errors)
        if any(e.get("type") == "too_long" for e in errors):
            message += f": send at most {MAX_RECORDS_PER_REQUEST:,} records per request (split the list)"
        return error_response(400, message, field)


def _changes(name: str, body: BaseModel) -> tuple[list[Change], list[dict[str, Any]]]:
    """The good records' changes and the rejected ones as {index, field, reason}."""
    if isinstance(body, IngestDelete):
        changes, rejected = [], []
        for kind in (ITEMS, ANSWERS, USERS):
            good, bad = parse_deletes(kind, getattr(body, kind))
            changes += good
            rejected += [{"index": r.index, "field": kind, "reason": r.reason} for r in bad]
        return changes, rejected
    kind = {"items": ITEMS, "answers": ANSWERS, "events": EVENTS}[name]
    try:
        good, bad = parse_records(kind, getattr(body, name))
    except InputError as error:  # a kind this route does not know: the route table is wrong
        raise RuntimeError(str(error)) from error
    return good, [{"index": r.index, "field": r.field, "reason": r.reason} for r in bad]


def _openapi(body_model: type[BaseModel]) -> dict[str, Any]:
    """The operation's request body and answers, for the spec serving/docs.py builds."""
    error = {"$ref": "#/components/schemas/Error"}
    result = IngestResult.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "schemas": result.pop("$defs", {}),  # named schemas the operation refers to
        "tags": [INGEST_TAG],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_model.model_json_schema()}}},
        "responses": {
            "200": {"description": "Written (durable); rejected records listed.", "content": {"application/json": {"schema": result}}},
            "400": {"description": "Not a JSON object, an unknown key, no records or too many.", "content": {"application/json": {"schema": error}}},
            "404": {"description": "RECQA_INGEST_TOKEN is not set: the write API does not exist.", "content": {"application/json": {"schema": error}}},
            "422": {"description": "No record was good: nothing written; `rejected` lists why.", "content": {"application/json": {"schema": error}}},
            "503": {"description": "The commit failed: nothing of the request was written; send it again.", "content": {"application/json": {"schema": error}}},
        },
        "security": [{"bearer": []}],
    }
