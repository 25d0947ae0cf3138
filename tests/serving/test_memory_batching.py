"""Concurrent vector searches run as one batch (serving/batching.py), and each caller still gets
exactly its own search: its filters, its depth, the rows a search alone would give."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.answers import AnswerIndex
from serving.batching import Batcher
from tests.serving.test_memory import FILTERS, Encoder, _queries, _table  # noqa: F401 - fixtures' helpers


def test_calls_arriving_while_a_batch_runs_form_the_next_batch_and_each_gets_its_result():
    release, started = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(key, items):
        batches.append(list(items))
        if len(batches) == 1:
            started.set()
            assert release.wait(10)
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(run)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, "k", 0)
        assert started.wait(10)
        rest = [pool.submit(batcher.submit, "k", i) for i in range(1, 6)]
        other = pool.submit(batcher.submit, "other key", 7)  # another key does not wait for "k"
        assert other.result(10) == 70
        while len(getattr(batcher._gathering.get("k"), "items", ())) < 5:  # the five gather behind the running batch
            threading.Event().wait(0.01)
        release.set()
        assert first.result(10) == 0 and [f.result(10) for f in rest] == [10, 20, 30, 40, 50]
    assert batches[0] == [0] and sorted(batches[-1]) == [1, 2, 3, 4, 5]


def test_with_two_lanes_a_second_call_runs_beside_the_first_and_later_ones_gather_behind_both():
    release = threading.Event()
    batches: list[list[int]] = []
    running, most = [0], [0]
    lock = threading.Lock()

    def run(key, items):
        with lock:
            batches.append(list(items))
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert release.wait(10)
            return [item * 10 for item in items]
        finally:
            with lock:
                running[0] -= 1

    batcher: Batcher[int, int] = Batcher(run, lanes=2)
    with ThreadPoolExecutor(8) as pool:
        first, second = pool.submit(batcher.submit, "k", 0), None
        while len(batches) < 1:
            threading.Event().wait(0.01)
        second = pool.submit(batcher.submit, "k", 1)
        while len(batches) < 2:  # a free lane: it runs at once, beside the first
            threading.Event().wait(0.01)
        rest = [pool.submit(batcher.submit, "k", i) for i in range(2, 5)]
        while len(getattr(batcher._gathering.get("k"), "items", ())) < 3:  # both lanes busy: the three gather
            threading.Event().wait(0.01)
        release.set()
        assert [f.result(10) for f in (first, second, *rest)] == [0, 10, 20, 30, 40]
    assert batches[:2] == [[0], [1]] and sorted(batches[2]) == [2, 3, 4] and len(batches) == 3
    assert most[0] == 2
    with pytest.raises(ValueError, match="lanes"):
        Batcher(run, lanes=0)

def test_a_failing_batch_raises_in_every_caller_of_it():
    def run(key, items):
        raise ValueError("broken search")

    with pytest.raises(ValueError, match="broken search"):
        Batcher(run).submit("k", 1)


def test_a_batch_never_exceeds_its_bound():
    sizes: list[int] = []
    gate = threading.Event()

    def run(key, items):
        sizes.append(len(items))
        gate.wait(0.05)
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=3)
    with ThreadPoolExecutor(12) as pool:
        assert sorted(pool.map(lambda i: batcher.submit("k", i), range(20))) == list(range(20))
    assert max(sizes) <= 3 and sum(sizes) == 20


@pytest.mark.parametrize("indexed", [False, True])
def test_concurrent_searches_with_their_own_filters_and_depths_equal_searches_alone(indexed, tmp_path):
    table = _table(tmp_path, indexed=indexed)
    alone, shared = AnswerIndex(table, Encoder()), AnswerIndex(table, Encoder())
    asked = [(vector, filters, depth) for vector in _queries(4) for filters in FILTERS for depth in (5, 40)]
    expected = [alone.ranked_rows(vector, filters, depth, False) for vector, filters, depth in asked]
    # exact: one key for every search, so all the rest gather in one batch, whatever their filters
    found, sizes = searches_behind_a_gate(shared._vectors, lambda a: shared.ranked_rows(a[0], a[1], a[2], False), asked,
                                          ("exact",), 0 if indexed else len(asked) - 1)
    for mine, theirs in zip(found, expected):
        assert [(r["doc_id"], r["chunk_id"]) for r in mine] == [(r["doc_id"], r["chunk_id"]) for r in theirs]
        np.testing.assert_allclose([r["_distance"] for r in mine], [r["_distance"] for r in theirs], atol=1e-6)
    assert sum(sizes) == len(asked)
    if not indexed:
        assert sizes == [1, len(asked) - 1]


def searches_behind_a_gate(vectors, search, asked: list, key: tuple, behind: int) -> tuple[list, list[int]]:
    """`search(a)` for every `a` of `asked` at once, on threads; the first batch of `vectors` (a
    VectorSearch) held until `behind` searches of batch `key` have gathered behind it (0: not
    held for any). The results in `asked`'s order, and the size of each batch run."""
    sizes: list[int] = []
    gate = threading.Event()
    run = vectors._batch

    def gated(key, items):
        sizes.append(len(items))
        if len(sizes) == 1:
            assert gate.wait(10)
        return run(key, items)

    vectors._batcher = Batcher(gated)
    with ThreadPoolExecutor(len(asked)) as pool:
        first = pool.submit(search, asked[0])
        while not sizes:
            threading.Event().wait(0.01)
        rest = [pool.submit(search, a) for a in asked[1:]]
        gathering = vectors._batcher._gathering
        while behind and (len(gathering[key].items) < behind if key in gathering else True):
            threading.Event().wait(0.01)
        gate.set()
        return [first.result(30), *(f.result(30) for f in rest)], sizes
