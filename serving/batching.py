"""Concurrent calls of one kind run as one batch: the searches of questions that arrive together.

No timer: a call that finds a free lane for its kind (one by default) runs at once (alone, at
concurrency 1, it waits for nothing); calls that arrive while every lane runs gather into the
next batch, which starts as soon as a lane frees. So batches grow with the load by themselves,
the way a GPU inference server's dynamic batching does without a fixed window. More lanes let
work that runs on one core a call (a forward pass on one thread) use several cores at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Calls one batch takes at most; the rest wait for the next (a bound on one batch's latency).
MAX_BATCH = 64


class _Group(Generic[Item, Result]):
    def __init__(self) -> None:
        self.items: list[Item] = []
        self.results: Sequence[Result] = ()
        self.error: BaseException | None = None
        self.done = threading.Event()


class Batcher(Generic[Item, Result]):
    """`submit(key, item)` returns `run(key, items)[i]` for its item, batched with the calls of
    the same key that arrive while `lanes` batches of that key run (see the module)."""

    def __init__(self, run: Callable[[Hashable, list[Item]], Sequence[Result]], max_batch: int = MAX_BATCH, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self._run = run
        self._max_batch = max_batch
        self._lanes = lanes
        self._lock = threading.Condition()
        self._gathering: dict[Hashable, _Group] = {}
        self._running: dict[Hashable, int] = {}  # batches of each key running now

    def running(self, key: Hashable) -> int:
        """Batches of `key` running now (a snapshot: one may start or end right after)."""
        return self._running.get(key, 0)

    def submit(self, key: Hashable, item: Item) -> Result:
        with self._lock:
            group = self._gathering.get(key)
            leader = group is None
            if leader:
                group = _Group()
                if self._running.get(key, 0) < self._lanes:  # a free lane: run now, alone, without a gap for others to join
                    self._running[key] = self._running.get(key, 0) + 1
                    claimed = True
                else:
                    self._gathering[key] = group
                    claimed = False
            group.items.append(item)
            index = len(group.items) - 1
            if len(group.items) >= self._max_batch and self._gathering.get(key) is group:
                del self._gathering[key]  # full: later calls start the next group
        if leader:
            if not claimed:
                with self._lock:
                    while self._running.get(key, 0) >= self._lanes:
                        self._lock.wait()
                    if self._gathering.get(key) is group:
                        del self._gathering[key]
                    self._running[key] = self._running.get(key, 0) + 1
            try:
                group.results = self._run(key, group.items)
            except BaseException as error:  # noqa: BLE001 - every caller of the batch gets its error
                group.error = error
            finally:
                with self._lock:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                    self._lock.notify_all()
                group.done.set()
        else:
            group.done.wait()
        if group.error is not None:
            raise group.error
        return group.results[index]
