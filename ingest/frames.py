"""The messages between the service and its ingest process, over a Unix socket.

A frame is a 4-byte length and then a JSON head line and the body bytes as they came: a
request's head names its id and route, an answer's its id, status and commit (COMMIT_HEADER's
value). Many requests share one connection, answered in any order. Not HTTP on purpose: the
service's event loop is the reads' too, and a frame costs it one write and one read; an HTTP
client per write cost the reads more than the writes did in the service itself
(benchmarks/RESULTS.md, "Freshness, fifteenth run").
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

SIZE = struct.Struct(">I")
# the process's graceful stop: requests in flight wait for their commit (seconds at most); past
# this the process drops them, and the service stops waiting for it 10 s later
GRACEFUL_SECONDS = 30


def frame(head: dict[str, Any], body: bytes) -> bytes:
    """One frame of `head` (JSON, one line) and `body`."""
    payload = json.dumps(head, separators=(",", ":")).encode() + b"\n" + body
    return SIZE.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """The next frame's head and body; IncompleteReadError at the end of the stream."""
    (size,) = SIZE.unpack(await reader.readexactly(SIZE.size))
    head, _, body = (await reader.readexactly(size)).partition(b"\n")
    return json.loads(head), body
