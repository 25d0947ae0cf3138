"""A publish and a rollback while writes arrive: no acknowledged write is lost.

A build applies the change log up to its snapshot and records it; the service overlays what
came after the snapshot of whichever release it serves. So a write acknowledged during a
build, a publish or a rollback is served by every release that follows: by the new tables
if their build saw it, by the overlay if not. Real Beam, real Lance, no model.
"""

from __future__ import annotations

import threading

import pytest

from features.changes import ANSWERS, ITEMS, parse_records
from pipelines import build_qa, build_recs, lance_io, publish
from registry.log import read_releases
from serving.reload import StoreFollower
from serving.store import Store
from tests.conftest import FakeEncoder
from tests.pipelines.test_build_changes import qa_argv, recs_argv, write_inputs

pytestmark = pytest.mark.usefixtures("fake_model")


class Writer(threading.Thread):
    """Writes an item and an answer per commit until stopped, remembering what was acknowledged."""

    def __init__(self, warehouse: str) -> None:
        super().__init__(daemon=True)
        self.warehouse, self.stop, self.acknowledged, self.errors = warehouse, threading.Event(), [], []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            items, _ = parse_records(ITEMS, [{"item_id": f"w-item-{n}", "title": f"Written item {n}"}])
            answers, _ = parse_records(ANSWERS, [{"doc_id": f"w-doc-{n}", "answer": f"Written answer {n}."}])
            try:
                lance_io.append_changes(self.warehouse, items + answers)
            except Exception as error:  # noqa: BLE001 - a failed write is not acknowledged; the test reports it
                self.errors.append(error)
            else:
                self.acknowledged.append(n)
            n += 1


def _serves_every_write(follower: StoreFollower, acknowledged: list[int]) -> list[str]:
    follower.refresh()
    store = follower.current()
    missing = [f"w-item-{n}" for n in acknowledged if not store.recommender.has_item(f"w-item-{n}")]
    return missing + [f"w-doc-{n}" for n in acknowledged if store.answers.document(f"w-doc-{n}") is None]


@pytest.mark.slow  # builds, publishes and a rollback while writers run
def test_a_publish_and_a_rollback_under_writes_lose_no_acknowledged_write(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    first = [build_recs.run(recs_argv(warehouse, inputs)).candidate, build_qa.run(qa_argv(warehouse, inputs)).candidate]
    publish.run(["--warehouse", warehouse, "--force", *(f"--candidate={c}" for c in first)])
    follower = StoreFollower(warehouse, lambda versions: Store(warehouse, FakeEncoder(), versions), interval_seconds=60)
    assert follower.refresh()
    writer = Writer(warehouse)
    writer.start()
    try:
        # builds that start while writes arrive: each applies its snapshot, the later writes stay in the log
        second = [build_recs.run(recs_argv(warehouse, inputs)).candidate, build_qa.run(qa_argv(warehouse, inputs)).candidate]
        publish.run(["--warehouse", warehouse, "--force", *(f"--candidate={c}" for c in second)])
        assert read_releases(warehouse).current.candidates == {"recs": second[0], "qa": second[1]}
        assert _serves_every_write(follower, list(writer.acknowledged)) == []
        publish.rollback(["--warehouse", warehouse])  # back to tables built before every write
        assert read_releases(warehouse).current.candidates == {"recs": first[0], "qa": first[1]}
        assert _serves_every_write(follower, list(writer.acknowledged)) == []
    finally:
        writer.stop.set()
        writer.join()
    assert writer.errors == [] and len(writer.acknowledged) > 5
    assert _serves_every_write(follower, writer.acknowledged) == []
    assert follower.current().versions == read_releases(warehouse).current.tables


def test_an_answer_written_since_is_chunked_as_the_served_tables_build_chunked(tmp_path):
    from features.schemas import QADocument
    from features.text import answer_chunks

    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)
    built = build_qa.run([*qa_argv(warehouse, inputs), "--chunk-words", "20", "--chunk-overlap", "5"])
    publish.run(["--warehouse", warehouse, "--force", f"--candidate={built.candidate}"])
    follower = StoreFollower(warehouse, lambda versions: Store(warehouse, FakeEncoder(), versions), interval_seconds=60)
    assert follower.refresh()
    text = " ".join(f"word{i}" for i in range(200))
    answers, _ = parse_records(ANSWERS, [{"doc_id": "long", "answer": text}])
    lance_io.append_changes(warehouse, answers)
    assert follower.refresh_changes()
    document = QADocument("long", text)
    assert follower.current().answers.document("long")["chunks"] == len(answer_chunks(document, 20, 5)) > len(answer_chunks(document)) > 1
