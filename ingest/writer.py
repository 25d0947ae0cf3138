"""One batching writer per process: concurrent requests share one commit of the change log.

A commit per request would make one Lance version and one fragment per write (50 writes/s:
50 versions/s, the failure mode the issue quotes). Requests are queued; one thread commits
whatever is queued when the oldest has waited `interval_seconds` or `max_records` are
waiting, whichever comes first. Each request's records go into one commit whole (a request
is never split), and its future resolves only when that commit has returned, i.e. is durable
and read back. A failed commit fails every request in it: nothing of it is acknowledged.

`before_commit`, when set, gets a commit's changes just before it is made and may return them
again, to be committed in their place (the ingest process attaches their texts' vectors then,
ingest/ahead.py); its failure is logged and the changes are committed as they came.
`on_commit`, when set, gets each commit's `CommitTimings` once its requests are answered; each
request's `Commit` holds them too, which is how the service's metrics get them (the write API's
process sets no `on_commit`). A writer that falls behind its requests shows as their time
queued growing, which the answer's latency alone does not tell apart from a slow commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from features.changes import Change

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 0.2
DEFAULT_MAX_RECORDS = 500
# one fragment and one version per commit: compacted every this many commits (at 5 commits/s, every 20 s)
DEFAULT_MAINTAIN_EVERY = 100

Append = Callable[[Sequence[Change]], int]  # commits changes whole, returns the version holding them


@dataclass(frozen=True)
class CommitTimings:
    """Where one commit's time went, in seconds."""

    records: int
    queued: float  # its oldest request's wait, from submit to the commit's start (the interval, and the first commit's table creation, included)
    ahead: float  # `before_commit`: the work done ahead (the commit's texts embedded)
    append: float  # the change log commit itself


@dataclass(frozen=True)
class Commit:
    """The commit that holds a request's records: the log version, when it returned, how many
    records it held, and where its time went."""

    version: int
    at: datetime
    records: int
    timings: CommitTimings | None = None


class CommitFailed(RuntimeError):
    """The commit holding a request's records failed: none of them is acknowledged."""


class WriterClosed(RuntimeError):
    """The writer was closed before the request's records were committed."""


@dataclass
class _Pending:
    changes: Sequence[Change]
    future: Future
    submitted: float = field(default_factory=time.monotonic)


_STOP = object()


class BatchingWriter:
    """Groups submitted changes into commits on one background thread, started on the first submit."""

    def __init__(
        self,
        append: Append,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        max_records: int = DEFAULT_MAX_RECORDS,
        prepare: Callable[[], None] | None = None,
        maintain: Callable[[], Any] | None = None,
        maintain_every: int = DEFAULT_MAINTAIN_EVERY,
        before_commit: Callable[[Sequence[Change]], Sequence[Change] | None] | None = None,
        on_commit: Callable[[CommitTimings], Any] | None = None,
    ) -> None:
        self._append = append
        self.before_commit = before_commit
        self.on_commit = on_commit
        self._prepare = prepare  # run once on the thread before the first commit (create the table)
        self._maintain = maintain  # run on the thread every `maintain_every` commits (compaction)
        self.maintain_every = maintain_every
        self.interval_seconds = interval_seconds
        self.max_records = max_records
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commits = 0  # commits made, for tests and logs

    @classmethod
    def for_warehouse(cls, warehouse: str, **options) -> "BatchingWriter":
        """A writer of the warehouse's change log through the pipelines' one Lance writer."""
        from pipelines.lance_io import append_changes, compact_changes, ensure_changes_table

        return cls(lambda changes: append_changes(warehouse, changes), prepare=lambda: ensure_changes_table(warehouse),
                   maintain=lambda: compact_changes(warehouse), **options)

    def submit(self, changes: Sequence[Change]) -> "Future[Commit]":
        """Queue changes for the next commit; the future resolves to the Commit holding them all."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise WriterClosed("the writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recqa-ingest-writer", daemon=True)
                self._thread.start()
            self._queue.put(_Pending(list(changes), future))
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, then stop the thread; later submits raise WriterClosed."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        prepared = self._prepare is None
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, records = [first], len(first.changes)
            deadline = time.monotonic() + self.interval_seconds
            while records < self.max_records:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    pending = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if pending is _STOP:
                    stopping = True
                    break
                batch.append(pending)
                records += len(pending.changes)
            if not prepared:
                try:
                    self._prepare()
                    prepared = True
                except Exception as error:  # noqa: BLE001 - every waiting request learns why
                    self._fail(batch, error)
                    continue
            self._commit(batch)
        self._fail_queued()

    def _commit(self, batch: list[_Pending]) -> None:
        # A request whose caller went away (future cancelled) before the commit is left out.
        live = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
        changes = [change for pending in live for change in pending.changes]
        if not live:
            return
        started = time.monotonic()
        if self.before_commit is not None:
            try:
                ready = self.before_commit(changes)
                if ready is not None:
                    if len(ready) != len(changes) or any(a != b for a, b in zip(ready, changes)):
                        raise ValueError(f"it returned {len(ready)} changes other than the {len(changes)} it was given")
                    changes = list(ready)
            except Exception as error:  # noqa: BLE001 - work done ahead, not the write: the commit goes on
                logger.warning("work ahead of a commit failed (the commit goes on): %s: %s", type(error).__name__, error)
        appending = time.monotonic()
        try:
            version = self._append(changes)
        except Exception as error:  # noqa: BLE001 - every request of the commit fails, none is acknowledged
            self._fail(live, error)
            return
        appended = time.monotonic()
        self.commits += 1
        timings = CommitTimings(len(changes), started - min(p.submitted for p in live), appending - started, appended - appending)
        commit = Commit(version, datetime.now(timezone.utc), len(changes), timings)
        for pending in live:
            pending.future.set_result(commit)
        if (on_commit := self.on_commit) is not None:
            try:
                on_commit(timings)
            except Exception as error:  # noqa: BLE001 - a metric, not the write: it is already answered
                logger.warning("recording a commit's timings failed: %s: %s", type(error).__name__, error)
        if self._maintain is not None and self.commits % self.maintain_every == 0:
            try:  # after the answers: the requests of this commit do not wait for it
                logger.info("change log compacted: %s", self._maintain())
            except Exception as error:  # noqa: BLE001 - the log stays correct, only larger; next time again
                logger.warning("change log compaction failed: %s: %s", type(error).__name__, error)

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        logger.error("ingest commit of %d requests failed: %s: %s", len(batch), type(error).__name__, error)
        failure = CommitFailed(f"the change log commit failed ({type(error).__name__}: {error}); nothing of this request was written, send it again")
        for pending in batch:
            if pending.future.running() or pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(failure)

    def _fail_queued(self) -> None:
        """Requests queued after the stop: refused, never silently dropped."""
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                return
            if pending is not _STOP and pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(WriterClosed("the writer closed before this request was committed; send it again"))
