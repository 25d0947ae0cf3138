"""Concurrent calls of one kind run as one batch: the searches of questions that arrive together.

No timer: a call that finds no batch of its kind running runs at once (alone, at concurrency
1, it waits for nothing); calls that arrive while one runs gather into the next batch, which
starts as soon as the running one ends. So batches grow with the load by themselves, the way
a GPU inference server's dynamic batching does without a fixed window.
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
    the same key that arrive while another batch of that key runs (see the module)."""

    def __init__(self, run: Callable[[Hashable, list[Item]], Sequence[Result]], max_batch: int = MAX_BATCH) -> None:
        self._run = run
        self._max_batch = max_batch
        self._lock = threading.Condition()
        self._gathering: dict[Hashable, _Group] = {}
        self._running: set[Hashable] = set()

    def submit(self, key: Hashable, item: Item) -> Result:
        with self._lock:
            group = self._gathering.get(key)
            leader = group is None
            if leader:
                group = self._gathering[key] = _Group()
            group.items.append(item)
            index = len(group.items) - 1
            if len(group.items) >= self._max_batch:
                del self._gathering[key]  # full: later calls start the next group
        if leader:
            with self._lock:
                while key in self._running:
                    self._lock.wait()
                if self._gathering.get(key) is group:
                    del self._gathering[key]
                self._running.add(key)
            try:
                group.results = self._run(key, group.items)
            except BaseException as error:  # noqa: BLE001 - every caller of the batch gets its error
                group.error = error
            finally:
                with self._lock:
                    self._running.discard(key)
                    self._lock.notify_all()
                group.done.set()
        else:
            group.done.wait()
        if group.error is not None:
            raise group.error
        return group.results[index]
