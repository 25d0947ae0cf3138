"""The batching writer: what makes a commit, what a failure means, and a SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from features.changes import DELETE, ITEMS, Change
from ingest.writer import BatchingWriter, CommitFailed, CommitTimings, WriterClosed
from registry.log import read_changes
from tests.conftest import ROOT


def deletes(*keys: str) -> list[Change]:
    return [Change(ITEMS, DELETE, key) for key in keys]


class Recorder:
    """An append that records each commit's keys (a stand-in log; the real one is tested below)."""

    def __init__(self, fail: bool = False) -> None:
        self.commits: list[list[str]] = []
        self.fail = fail

    def __call__(self, changes) -> int:
        if self.fail:
            raise OSError("lost the disk")
        self.commits.append([c.key for c in changes])
        return len(self.commits)


def test_a_full_batch_commits_without_waiting_for_the_interval_and_a_request_is_never_split():
    append = Recorder()
    writer = BatchingWriter(append, interval_seconds=60, max_records=5)
    started = time.monotonic()
    futures = [writer.submit(deletes(f"k{n}")) for n in range(4)] + [writer.submit(deletes("a", "b", "c"))]
    commits = [future.result(timeout=10) for future in futures]
    assert time.monotonic() - started < 10  # the size, not the 60 s interval, closed the batch
    assert append.commits == [["k0", "k1", "k2", "k3", "a", "b", "c"]]
    assert {c.version for c in commits} == {1} and commits[0].records == 7
    writer.close()


def test_the_interval_closes_a_batch_that_is_not_full():
    append = Recorder()
    writer = BatchingWriter(append, interval_seconds=0.05, max_records=500)
    first = writer.submit(deletes("x")).result(timeout=10)
    second = writer.submit(deletes("y")).result(timeout=10)
    assert (first.version, second.version) == (1, 2) and append.commits == [["x"], ["y"]]
    writer.close()


def test_a_failed_commit_fails_every_request_in_it_and_the_writer_goes_on():
    append = Recorder(fail=True)
    writer = BatchingWriter(append, interval_seconds=0.2, max_records=500)
    futures = [writer.submit(deletes(f"k{n}")) for n in range(3)]
    for future in futures:
        with pytest.raises(CommitFailed, match="lost the disk"):
            future.result(timeout=10)
    append.fail = False
    assert writer.submit(deletes("after")).result(timeout=10).version == 1
    assert append.commits == [["after"]]
    writer.close()


def test_close_commits_what_is_queued_then_refuses_new_writes():
    append = Recorder()
    writer = BatchingWriter(append, interval_seconds=60, max_records=500)
    future = writer.submit(deletes("queued"))
    writer.close()
    assert future.result(timeout=1).version == 1 and append.commits == [["queued"]]
    with pytest.raises(WriterClosed):
        writer.submit(deletes("late"))


# A process writing through the real writer from four threads, printing each request's keys
# only after its future resolved (acknowledged); killed with SIGKILL while it commits.
_WRITER_SCRIPT = """
import sys, threading
from features.changes import Change
from ingest.writer import BatchingWriter

writer = BatchingWriter.for_warehouse(sys.argv[1], interval_seconds=0.02)
lock = threading.Lock()

def client(c):
    n = 0
    while True:
        keys = [f"c{c}-r{n}-{j}" for j in range(3)]
        writer.submit([Change("items", "upsert", k, {"item_id": k, "title": "t", "text": None, "category": None}) for k in keys]).result()
        with lock:
            print(" ".join(keys), flush=True)
        n += 1

for c in range(4):
    threading.Thread(target=client, args=(c,), daemon=True).start()
threading.Event().wait()
"""


def test_the_log_is_compacted_every_so_many_commits_and_a_failed_compaction_loses_nothing():
    append, runs = Recorder(), []

    def maintain():
        runs.append(append.commits[-1][0])
        if len(runs) == 1:
            raise OSError("compaction failed")  # the writer goes on; the commits stand

    writer = BatchingWriter(append, interval_seconds=0.01, max_records=500, maintain=maintain, maintain_every=2)
    for n in range(5):
        assert writer.submit(deletes(f"k{n}")).result(timeout=10).version == n + 1
    writer.close()
    assert runs == ["k1", "k3"] and append.commits == [[f"k{n}"] for n in range(5)]


def test_a_real_writer_compacts_the_change_log(tmp_path):
    import lance

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri
    from registry.log import read_changes

    writer = BatchingWriter.for_warehouse(str(tmp_path), interval_seconds=0.01, maintain_every=10)
    for n in range(20):
        writer.submit(deletes(f"k{n}")).result(timeout=30)
    writer.close()
    assert len(lance.dataset(table_uri(str(tmp_path), CHANGES_TABLE)).get_fragments()) < 20  # compacted at commit 10 and 20
    assert [c.key for c in read_changes(str(tmp_path)).changes] == [f"k{n}" for n in range(20)]


@pytest.mark.parametrize("acknowledged_before_kill", [1, 25])
def test_sigkill_mid_batch_keeps_every_acknowledged_write_and_no_half_request(tmp_path, acknowledged_before_kill):
    warehouse = tmp_path / "warehouse"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(warehouse)], stdout=subprocess.PIPE, text=True, env=env)
    acknowledged = []
    try:
        while len(acknowledged) < acknowledged_before_kill:
            line = process.stdout.readline()
            assert line, f"the writer exited with {process.poll()} before acknowledging anything"
            acknowledged.append(line.split())
        os.kill(process.pid, signal.SIGKILL)  # while the four clients keep the writer committing
    finally:
        if process.poll() is None:
            process.kill()
        rest = process.communicate(timeout=30)[0]
    acknowledged += [line.split() for line in rest.splitlines() if line.strip()]
    assert process.returncode == -signal.SIGKILL

    # restart: a new writer opens the log and appends after whatever the killed one left
    restarted = BatchingWriter.for_warehouse(str(warehouse), interval_seconds=0.01)
    restarted.submit(deletes("after-restart")).result(timeout=30)
    restarted.close()
    keys = Counter(c.key for c in read_changes(str(warehouse)).changes)
    assert all(keys[key] == 1 for request in acknowledged for key in request)  # every acknowledged write, once
    per_request = Counter(key.rsplit("-", 1)[0] for key in keys if key != "after-restart")
    assert set(per_request.values()) == {3}  # a request is in the log whole or not at all
    assert keys["after-restart"] == 1


def test_before_commit_sees_each_commits_changes_first_and_its_failure_does_not_stop_the_commit():
    append, seen = Recorder(), []

    def ahead(changes):
        seen.append(([c.key for c in changes], len(append.commits)))
        if len(seen) == 2:
            raise RuntimeError("the encoder is gone")

    writer = BatchingWriter(append, interval_seconds=0.05, max_records=500, before_commit=ahead)
    assert writer.submit(deletes("x", "y")).result(timeout=10).version == 1
    assert writer.submit(deletes("z")).result(timeout=10).version == 2  # its work ahead failed; the write did not
    assert seen == [(["x", "y"], 0), (["z"], 1)]  # each time before the commit holding them
    assert append.commits == [["x", "y"], ["z"]]
    writer.close()


def test_the_changes_before_commit_returns_are_committed_in_place_of_those_it_was_given_unless_they_differ():
    """The service returns the commit's changes with their texts' vectors; what returns other
    changes (fewer, or other keys) is a bug of the hook, and the changes are committed as they came."""
    import dataclasses

    import numpy as np

    from features.changes import Embeddings

    committed: list[list[Change]] = []

    def append(changes) -> int:
        committed.append(list(changes))
        return len(committed)

    embedded = Embeddings("m", (b"k" * 16,), np.ones((1, 2), dtype=np.float32))
    answers = iter([
        lambda changes: [dataclasses.replace(c, embeddings=embedded) for c in changes],
        lambda changes: changes[:1],  # one dropped
        lambda changes: [Change(ITEMS, DELETE, "other")] * len(changes),  # others in their place
        lambda changes: None,
    ])
    writer = BatchingWriter(append, interval_seconds=0.05, max_records=500, before_commit=lambda changes: next(answers)(changes))
    for _ in range(4):
        writer.submit(deletes("x", "y")).result(timeout=10)
    writer.close()
    assert [[c.key for c in commit] for commit in committed] == [["x", "y"]] * 4
    assert [[c.embeddings for c in commit] for commit in committed] == [[embedded, embedded], [None, None], [None, None], [None, None]]


def test_on_commit_gets_each_commits_records_and_where_its_time_went_after_its_requests_are_answered():
    """The metrics' source: how long the oldest request waited, the work ahead, the append; a
    failed commit reports nothing, and a failing hook fails no write."""
    recorder, futures, seen = Recorder(), [], []

    def append(changes) -> int:
        time.sleep(0.05)
        if any(c.key == "doomed" for c in changes):
            raise OSError("lost the disk")
        return recorder(changes)

    def on_commit(timings: CommitTimings) -> None:
        seen.append((timings, [future.done() for future in futures]))
        raise RuntimeError("the metrics are gone")

    writer = BatchingWriter(append, interval_seconds=0.1, max_records=500, before_commit=lambda changes: time.sleep(0.3), on_commit=on_commit)
    futures += [writer.submit(deletes("a", "b")), writer.submit(deletes("c"))]
    assert [future.result(timeout=10).version for future in futures] == [1, 1]
    with pytest.raises(CommitFailed):
        writer.submit(deletes("doomed")).result(timeout=10)
    futures.append(writer.submit(deletes("d")))
    assert futures[-1].result(timeout=10).version == 2
    writer.close()
    assert [(timings.records, done) for timings, done in seen] == [(3, [True, True]), (1, [True, True, True])]  # the failed commit: none
    assert [futures[0].result().timings, futures[-1].result().timings] == [timings for timings, _ in seen]  # each request's Commit holds them too
    first = seen[0][0]
    assert 0.1 <= first.queued < 0.3  # the oldest request waited out the interval; the work ahead is not in it
    assert first.ahead >= 0.3 and 0.05 <= first.append < 0.3  # each stage its own time
