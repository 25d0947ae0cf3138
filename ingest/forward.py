"""The service's side of the ingest process (ingest/process.py): start it when none runs,
forward the write API to it, and stop it when it runs in this process's own server.

The routes are the write API's paths on the service's port, behind its token check
(GuardMiddleware): each request's body goes as it came to the ingest process over a Unix
socket (ingest/frames.py), and its answer comes back as it was made there. The reads never
wait on a write's parsing, embedding or commit: those run in the other process, under its own GIL.

The workers of a server (RECQA_WORKERS) share one ingest process, so one writer batches and
commits all their writes: the first worker to find none running starts it, the others connect to
its socket (ingest/rendezvous.py). It stops with the server, not with the worker that started
it. A process that exits is started again by the next write; a write whose answer was lost with it
is a 503 that says it may have been logged (an upsert or delete sent again means the same as once).
Each commit's timings come back with its first answer (COMMIT_HEADER's value) and go to
`on_commit` (the service's /metrics).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.api import BODIES
from ingest.frames import GRACEFUL_SECONDS, frame, read_frame
from ingest.rendezvous import LOCK_HELD, SOCKET_NAME, FolderRefused, server_folder, writer_running
from ingest.routes import INGEST_PREFIX, commit_of_header, described
from ingest.writer import CommitTimings
from serving.errors import error_response

logger = logging.getLogger("recqa.ingest")
ROOT = Path(__file__).resolve().parents[1]  # the folder holding the `ingest` package: the process imports it from there
# a write waits this long for the process to start (it loads the model first), then is a 503, not written
START_SECONDS = 30.0
# a write answered later than this is a 503 that may have been logged (a commit takes seconds at most)
REQUEST_SECONDS = 60.0
SOCKET_PATH_BYTES = 107  # sun_path holds 108 bytes on Linux, the last a NUL


class IngestUnavailable(RuntimeError):
    """The ingest process is not running and could not be started."""


class IngestProcess:
    """The service's link to its one writer, and the routes that forward to it.

    Every worker of a server (RECQA_WORKERS) has one; they meet in one folder
    (ingest/rendezvous.py), and whichever finds no writer there starts one, which the others
    then use. `warehouse` is asked when the writer starts (`start`, or the first write), so
    building the app reads no settings and starts nothing; `server` then names the process whose
    workers share the writer (the service passes BentoML's arbiter; by default this process)."""

    def __init__(self, warehouse: Callable[[], str], server: Callable[[], int] = os.getpid) -> None:
        self._warehouse, self._server = warehouse, server
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None  # the writer this worker started, if it did
        self._folder: str | None = None
        self._folder_server = 0  # the server the folder (and any writer started from it) belongs to
        self._connection: _Connection | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self.on_commit: Callable[[CommitTimings], Any] | None = None

    @property
    def folder(self) -> str:
        """This server's writers' folder (made on first use): its workers all use the same."""
        if self._folder is None:
            server = self._server()
            try:
                folder = server_folder(self._warehouse(), server)
            except (FolderRefused, OSError) as error:  # a 503 naming it, not a 500
                raise IngestUnavailable(f"the writers' folder cannot be used: {error}") from error
            socket = os.path.join(folder, SOCKET_NAME)
            if len(os.fsencode(socket)) > SOCKET_PATH_BYTES:  # connect(2) would refuse it on every write
                raise IngestUnavailable(f"the writers' socket path {socket} is longer than a Unix socket allows "
                                        f"({SOCKET_PATH_BYTES} bytes): set TMPDIR to a shorter folder")
            self._folder, self._folder_server = folder, server
        return self._folder

    @property
    def socket(self) -> str:
        return os.path.join(self.folder, SOCKET_NAME)

    def start(self) -> subprocess.Popen | None:
        """Start a writer unless one runs, this worker's or another's; it answers once its model is
        loaded (`_connected`). Returns the process it started, if it started one."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return None
            folder = self.folder
            if self._server() != self._folder_server:  # orphaned: a writer started now would watch the wrong process for ever
                raise IngestUnavailable(f"this worker's server (pid {self._folder_server}) is gone; the service is stopping")
            try:
                if writer_running(folder):
                    return None  # another worker's, serving or loading its model
                if self._process is not None and self._process.returncode != LOCK_HELD:
                    logger.warning("the ingest process exited (code %s): starting it again", self._process.returncode)
                self._process = subprocess.Popen(  # `-m` from ROOT: it imports this checkout's packages; the service's environment
                    [sys.executable, "-m", "ingest.process", "--warehouse", self._warehouse(), "--socket", self.socket,
                     "--server", str(self._folder_server)], cwd=str(ROOT),
                )
            except OSError as error:  # nothing was sent: a 503 that says so
                raise IngestUnavailable(f"the ingest process could not be started: {error}") from error
            return self._process

    async def _connected(self) -> "_Connection":
        """This loop's connection to the writer, which is started (and waited for) first if none runs."""
        loop = asyncio.get_running_loop()
        if self._usable(self._connection, loop):
            return self._connection
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:  # concurrent first writes open one connection
            if not self._usable(self._connection, loop):
                if self._connection is not None and self._connection.loop is loop:
                    self._connection.close()
                self._connection = _Connection(*await self._open())
        return self._connection

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the writer's socket, starting one when no process holds the lock.

        A writer started here that exits on its own fails the write at once; one that exits with
        LOCK_HELD lost the lock to another worker's, whose socket is then waited for."""
        deadline, started = time.monotonic() + START_SECONDS, None
        while True:
            try:
                return await asyncio.open_unix_connection(self.socket)
            except (FileNotFoundError, ConnectionRefusedError):
                pass  # none yet, or a stale socket of a writer that was killed
            if started is not None and started.poll() not in (None, LOCK_HELD):
                raise IngestUnavailable(f"the ingest process exited (code {started.returncode}); see the service log")
            started = self.start() or started
            if time.monotonic() > deadline:
                raise IngestUnavailable(f"the ingest process is still starting (loading its model) after {START_SECONDS:.0f} s")
            await asyncio.sleep(0.05)

    @staticmethod
    def _usable(connection: "_Connection | None", loop: asyncio.AbstractEventLoop) -> bool:
        """A connection is its loop's (asyncio streams are), while open: a writer that stops closes it."""
        return connection is not None and connection.loop is loop and not connection.closed

    def routes(self) -> list[Route]:
        return [Route(f"{INGEST_PREFIX}{name}", described(self._endpoint(name), name), methods=["POST"]) for name in BODIES]

    def _endpoint(self, name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                head, content = await (await self._connected()).ask(name, body)
            except IngestUnavailable as error:
                return error_response(503, f"not written: {error}; send it again")
            except (OSError, TimeoutError) as error:
                return error_response(503, f"the ingest process did not answer ({type(error).__name__}: {error}); the write may or may "
                                           "not have been logged: send it again (an upsert or delete sent twice means the same as once; "
                                           "an event sent twice is counted twice)")
            self._observe(head.get("commit"))
            return Response(content, head["status"], media_type="application/json")

        return endpoint

    def _observe(self, header: str | None) -> None:
        """Pass a commit's timings to `on_commit`: the writer sends them with the commit's first
        answer only, to whichever worker it goes (ingest/process.py), so each is observed once."""
        if header is None or self.on_commit is None:
            return
        timings = commit_of_header(header)[1]
        try:
            self.on_commit(timings)
        except Exception as error:  # noqa: BLE001 - a metric, not the write: it is already answered
            logger.warning("recording a commit's timings failed: %s: %s", type(error).__name__, error)

    def close(self) -> None:
        """Forget the writer; stop it if this process started it and is itself the server (an
        in-process app): it answers the writes in flight and commits what is queued first, and
        their answers reach the requests while the event loop runs on. A BentoML worker leaves
        it to the other workers: it stops once the server is gone (ingest/process.py). The
        folder stays for them too (ingest/rendezvous.py removes it once the server is gone)."""
        with self._lock:
            process, self._process = self._process, None
            if self._server() != os.getpid():
                process = None
            self._connection, self._opening = None, None  # its reader still hands out the answers in flight, then ends
            self._folder = None  # the next start may serve another warehouse
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(GRACEFUL_SECONDS + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Connection:
    """One socket to the ingest process, used from one event loop: requests go out as frames
    with an id, and one reader task hands each answer to the request waiting for it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.loop = asyncio.get_running_loop()
        self._writer = writer
        self._waiting: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self.closed = False
        self._reader = self.loop.create_task(self._read(reader))

    async def ask(self, route: str, body: bytes) -> tuple[dict[str, Any], bytes]:
        """The ingest process's answer (head, body) to a write of `body` to `route`."""
        if self.closed:
            raise ConnectionResetError("the connection to the ingest process is closed")
        key = next(self._ids)
        waiting = self._waiting[key] = self.loop.create_future()
        try:
            self._writer.write(frame({"id": key, "route": route}, body))
            async with asyncio.timeout(REQUEST_SECONDS):
                return await waiting
        finally:
            self._waiting.pop(key, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head, body = await read_frame(reader)
                waiting = self._waiting.get(head.get("id"))
                if waiting is not None and not waiting.done():
                    waiting.set_result((head, body))
        except Exception as error:  # noqa: BLE001 - end of stream or a broken one: every waiting write learns it
            self._fail(ConnectionResetError(f"the ingest process closed the connection ({type(error).__name__})"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(error)
        self._writer.close()

    def close(self) -> None:
        """Close it, from its own loop (`IngestProcess._connected` replacing it)."""
        self._reader.cancel()
        self._fail(ConnectionResetError("the connection to the ingest process was closed"))
