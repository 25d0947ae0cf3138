"""The write API in a process of its own: `python -m ingest.process --warehouse W --socket PATH`.

`recqa serve` starts it (ingest/forward.py) and forwards each `/ingest/*` request to it over a
Unix socket (ingest/frames.py), after the service's token check. Why a process: in the
service's own, the writes' handling, embedding and commits took the GIL the reads need, and
reads slowed more than the writes' CPU explains (benchmarks/RESULTS.md, "Freshness, fifteenth run").

It holds the routes' logic (ingest/routes.py), the one BatchingWriter of the change log and
the model the service embeds the log's texts with (the service's RECQA_MODEL, backend and
threads; its precision RECQA_INGEST_PRECISION's, see `batch_precision`), so a commit's texts
are embedded once, here, and kept in the log. With bf16 writes it runs 10 lower than the
service (nice(2); RECQA_INGEST_NICE): when the reads and the writes both want the cores, the
reads get most of them, and on a CPU that runs bfloat16 natively the writes still kept up
(benchmarks/RESULTS.md, "Freshness, sixteenth run"). It answers only on its socket, in a
folder only this user can open; the socket appears once the model is loaded. It takes the
folder's lock first and exits with LOCK_HELD when another process holds it: a server's workers
share one writer (ingest/rendezvous.py). SIGTERM (or its
server gone: `--server`, BentoML's arbiter) stops it: requests in flight are answered, what is
queued is committed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.ahead import AheadEmbedder, published_texts
from ingest.api import BODIES
from ingest.frames import GRACEFUL_SECONDS, frame, read_frame
from ingest.rendezvous import LOCK_HELD, alive, take_lock
from ingest.routes import COMMIT_HEADER, IngestEndpoints, commit_of_header
from serving.encoders import batch_precision, load_batch_encoder
from serving.errors import error_response
from serving.settings import DEFAULT_INGEST_NICE, ServiceSettings

logger = logging.getLogger("recqa.ingest")
SERVER_CHECK_SECONDS = 1.0
HEADED_COMMITS = 1024  # commit versions remembered, so each commit's timings go out once


def lower_priority(by: int) -> int:
    """Run every thread of this process `by` lower than the calling thread runs now (nice(2), at
    most 19), none higher than it already runs; returns the calling thread's new value.

    Linux keeps a nice value per thread, and a new thread takes its creator's: the threads
    already started (the imports' and the model's: pylance's allocator's among them) are set one
    by one from /proc, passes repeated until no new one appears, and every thread started after
    is born at the new value. A refusal (a sandbox that forbids setpriority) is logged, not
    raised: the writes still run, at the service's priority.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if by <= 0:
        return current
    target = min(19, current + by)
    tasks = Path("/proc/self/task")
    try:
        if not tasks.is_dir():  # no per-thread values to reach: the calling thread's alone
            os.setpriority(os.PRIO_PROCESS, 0, target)
            return target
        done: set[int] = set()
        while fresh := {int(task.name) for task in tasks.iterdir()} - done:
            for thread in fresh:
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                    os.setpriority(os.PRIO_PROCESS, thread, max(target, os.getpriority(os.PRIO_PROCESS, thread)))
            done |= fresh
    except OSError as error:  # EPERM, or a seccomp profile's ENOSYS
        logger.warning("could not lower the writes' priority (%s): they run at the service's", error)
        return os.getpriority(os.PRIO_PROCESS, 0)
    return target


def write_niceness(nice: int | None, precision: str) -> int:
    """RECQA_INGEST_NICE when set; unset, DEFAULT_INGEST_NICE for bf16 writes and 0 for fp32 ones:
    lowered, fp32 writes fell behind 50 a second under reads that filled the cores, where bf16
    ones kept up (benchmarks/RESULTS.md, "Freshness, sixteenth run")."""
    if nice is not None:
        return nice
    return DEFAULT_INGEST_NICE if precision == "bf16" else 0


def endpoints(warehouse: str, settings: ServiceSettings, precision: str) -> IngestEndpoints:
    """The write routes' logic over `warehouse`, each commit's texts embedded ahead with the service's model in `precision`."""
    logger.info("embedding writes with %s in %s", settings.model_name, precision)
    encoder = load_batch_encoder(settings.model_name, settings.encoder_backend, settings.encoder_threads, precision)
    ingest = IngestEndpoints(lambda: warehouse, timings_header=True)
    ingest.before_commit = AheadEmbedder(encoder, lambda: published_texts(warehouse))
    return ingest


async def serve(ingest: IngestEndpoints, socket: str, stop: asyncio.Event) -> None:
    """Answer frames on `socket` until `stop`; then answer those in flight and close the writer.

    After `stop`, a frame that arrives on a connection still open (another worker's) is answered
    503, not written: nothing is committed that its sender is not told about. Each commit's
    timings go out with its first answer only, so the service's /metrics, which BentoML sums over
    the workers, counts each commit once."""
    in_flight: set[asyncio.Task] = set()
    connections: set[asyncio.StreamWriter] = set()
    headed: collections.OrderedDict[int, None] = collections.OrderedDict()  # commit versions whose timings went out
    stopping = False

    def first_of_commit(header: str | None) -> str | None:
        if header is None:
            return None
        version = commit_of_header(header)[0]
        if version in headed:
            return None
        headed[version] = None
        if len(headed) > HEADED_COMMITS:
            headed.popitem(last=False)
        return header

    async def answer(head: dict, body: bytes, writer: asyncio.StreamWriter) -> None:
        route = head.get("route")
        try:
            if stopping:
                response = error_response(503, "not written: the ingest process is stopping; send it again")
            elif route in BODIES:
                response = await ingest.respond(route, body)
            else:
                response = error_response(404, f"no write route {route!r}")
        except Exception as error:  # noqa: BLE001 - the service gets an answer, never a silent drop
            logger.exception("ingest request failed")
            response = error_response(500, f"the write failed ({type(error).__name__}: {error}); send it again")
        if not writer.is_closing():
            try:
                commit = first_of_commit(response.headers.get(COMMIT_HEADER))
            except Exception:  # noqa: BLE001 - a metric: the answer goes out without it
                logger.exception("reading a commit's timings failed")
                commit = None
            writer.write(frame({"id": head.get("id"), "status": response.status_code, "commit": commit}, bytes(response.body)))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            while True:
                head, body = await read_frame(reader)
                task = asyncio.create_task(answer(head, body, writer))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            connections.discard(writer)  # the service closed its end (a worker gone): so does this
            writer.close()
        except asyncio.CancelledError:
            pass  # the process is stopping: its answers in flight were waited for (`serve`)

    server = await asyncio.start_unix_server(connection, path=socket)
    await stop.wait()
    server.close()  # no new connection; open ones get 503 for new frames, and their answers in flight
    stopping = True
    deadline = time.monotonic() + GRACEFUL_SECONDS
    while in_flight and time.monotonic() < deadline:  # new frames' 503s join the set as they come
        await asyncio.wait(set(in_flight), timeout=deadline - time.monotonic())
    await asyncio.to_thread(ingest.close)  # what is queued is committed first
    closing = list(connections)  # a connection that ends meanwhile leaves the set
    for writer in closing:  # the answers written are sent before the process ends
        writer.close()
    with contextlib.suppress(OSError):  # while the lock is still held: the next writer's socket is never removed
        os.unlink(socket)
    for writer in closing:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), timeout=5)


def _stop_with(server: int, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    """Set `stop` once `server` (the service's server: BentoML's arbiter, whose workers share this
    writer) is gone, however it went. A worker that stops or is restarted does not stop it: the
    other workers still write through it."""
    def watch() -> None:
        while alive(server):
            time.sleep(SERVER_CHECK_SECONDS)
        logger.warning("the service whose writes this process takes is gone: stopping")
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="recqa-ingest-server", daemon=True).start()


async def _run(ingest: IngestEndpoints, socket: str, server: int) -> None:
    stop, loop = asyncio.Event(), asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _stop_with(server, stop, loop)
    await serve(ingest, socket, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.process", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--socket", required=True, help="Unix socket path to answer on")
    parser.add_argument("--server", type=int, default=None, help="stop once this process is gone (default: the parent)")
    args = parser.parse_args(argv)
    server = args.server if args.server is not None else os.getppid()  # read first: the model takes seconds to load
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s (ingest process): %(message)s")
    lock = take_lock(os.path.dirname(args.socket))  # kept open until the process exits, however it exits
    if lock is None:
        logger.info("another ingest process writes through %s: leaving the writes to it", os.path.dirname(args.socket))
        return LOCK_HELD
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)  # a killed writer's: no process answers on it
    settings = ServiceSettings.from_env()
    precision = batch_precision(settings.ingest_precision, settings.encoder_precision)
    ingest = endpoints(args.warehouse, settings, precision)  # the model loads at the service's priority: a restart is not slowed
    logger.info("running at niceness %d", lower_priority(write_niceness(settings.ingest_nice, precision)))
    try:
        asyncio.run(_run(ingest, args.socket, server))
    finally:
        os.close(lock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
