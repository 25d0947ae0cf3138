"""The write API's CLI mirrors (upsert, ingest-events, delete), and what they write surviving the next build.

Through `recqa`'s own entry point, on real Lance; the builds run real Beam with a stand-in encoder.
"""

from __future__ import annotations

import json
import shutil
import zlib

import lance
import numpy as np
import pytest

from cli.main import main
from features.changes import ANSWERS, DELETE, EVENTS, ITEMS, USERS
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import ingest
from registry.log import read_changes, read_releases
from tests.conftest import FakeEncoder
from tests.pipelines.test_build_changes import qa_argv, recs_argv, write_inputs

pytestmark = pytest.mark.usefixtures("fake_model")  # real Beam and Lance, no model


def _recqa(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upsert_reads_the_file_as_the_build_would_and_refuses_too_many_rejects(tmp_path, capsys):
    warehouse = str(tmp_path / "warehouse")
    items = tmp_path / "catalogue.csv"
    items.write_text("sku,title\ni1,Renamed\n,no id\ni9,New\n")
    code, _, err = _recqa(capsys, "upsert", "items", str(items), "--warehouse", warehouse, "--map-items", "item_id=sku")
    assert code == 1 and "1 of 3 items records rejected" in err and "catalogue.csv:3: field 'item_id'" in err
    assert "nothing was written" in err and read_changes(warehouse).changes == ()
    code, out, _ = _recqa(capsys, "upsert", "items", str(items), "--warehouse", warehouse, "--map-items", "item_id=sku",
                          "--max-reject-fraction", "0.5")
    log = read_changes(warehouse)
    assert code == 0 and [(c.key, c.record["title"]) for c in log.changes] == [("i1", "Renamed"), ("i9", "New")]
    assert f"accepted        2  rejected      1  change log version {log.version}" in out and "catalogue.csv:3" in out


def test_answers_are_read_as_build_qa_documents_and_events_as_interactions(tmp_path, capsys):
    warehouse = str(tmp_path / "warehouse")
    answers = tmp_path / "faq.jsonl"
    answers.write_text(json.dumps({"_id": "d1", "answer": "New text", "tags": "a, b"}) + "\n")
    events = tmp_path / "events.csv"
    events.write_text("Customer,item_id,When\nu1,i1,30.11.2026 10:00\n")
    assert _recqa(capsys, "upsert", "answers", str(answers), "--warehouse", warehouse, "--map", "doc_id=_id")[0] == 0
    assert _recqa(capsys, "ingest-events", str(events), "--warehouse", warehouse, "--map-interactions", "user_id=Customer",
                  "--map", "timestamp=When", "--timestamp-format", "%d.%m.%Y %H:%M")[0] == 0
    answer, event = read_changes(warehouse).changes
    assert (answer.kind, answer.key, answer.record["tags"]) == (ANSWERS, "d1", ["a", "b"])
    assert (event.kind, event.key, event.record["item_id"]) == (EVENTS, "u1", "i1") and event.record["timestamp"] == 1_796_032_800


def test_deletes_take_ids_and_an_ids_file_and_commit_in_batches(tmp_path, capsys, monkeypatch):
    warehouse = str(tmp_path / "warehouse")
    ids = tmp_path / "forget.txt"
    ids.write_text("u2\n\n  u3 \nu4\n")
    monkeypatch.setattr(ingest, "BATCH_SIZE", 2)
    code, out, _ = _recqa(capsys, "delete", "users", "u1", "--ids-file", str(ids), "--warehouse", warehouse)
    log = read_changes(warehouse)
    assert code == 0 and [(c.kind, c.op, c.key) for c in log.changes] == [(USERS, DELETE, u) for u in ("u1", "u2", "u3", "u4")]
    assert "accepted        4  rejected      0" in out and "(2 commits)" in out
    code, _, err = _recqa(capsys, "delete", "items", "--warehouse", warehouse)
    assert code == 1 and "no ids given" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["delete", "users", "u1", "--id-file", "x"], "unknown flag --id-file (did you mean --ids-file?)"),
    (["upsert", "items", "f.csv", "--map-documents", "doc_id=x"], "items take --map-items, not this one"),
    (["ingest-events", "f.csv", "--runner", "DirectRunner"], "--runner is an Apache Beam flag"),
    (["upsert", "answers", "f.csv", "--input-format", "ms-store"], "answers are read as contract or stackfaq, not ms-store"),
])
def test_a_bad_flag_fails_before_anything_is_written(tmp_path, capsys, argv, message):
    (tmp_path / "f.csv").write_text("item_id,title\ni1,x\n")
    code, _, err = _recqa(capsys, *[str(tmp_path / a) if a == "f.csv" else a for a in argv], "--warehouse", str(tmp_path / "w"))
    assert code == 1 and message in err and not (tmp_path / "w").exists()


def _published(warehouse: str, name: str, key: str) -> dict[str, dict]:
    version = read_releases(warehouse).current.tables[name]
    return {row[key]: row for row in lance.dataset(f"{warehouse}/{name}.lance", version=version).to_table().to_pylist()}


@pytest.mark.slow  # both builds and a publish
def test_every_logged_write_survives_the_next_build_and_publish_from_the_original_files(tmp_path, capsys):
    warehouse = str(tmp_path / "warehouse")
    inputs = write_inputs(tmp_path)  # the original files; never changed below
    (tmp_path / "new-items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"sku": "i1", "title": "Renamed item one", "text": "now with a description"}, {"sku": "i9", "title": "A brand new item"})))
    (tmp_path / "new-answers.csv").write_text("doc_id,question,answer\nd1,Question 1?,A rewritten answer one.\nd9,New?,A brand new answer.\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\nnewcomer,i9,1600000500\nnewcomer,i0,1600000600\n")
    for argv in (["upsert", "items", str(tmp_path / "new-items.jsonl"), "--map-items", "item_id=sku"],
                 ["upsert", "answers", str(tmp_path / "new-answers.csv")],
                 ["ingest-events", str(tmp_path / "events.csv")],
                 ["delete", "items", "i2"], ["delete", "answers", "d2"], ["delete", "users", "u3"]):
        assert _recqa(capsys, *argv, "--warehouse", warehouse)[0] == 0
    candidates = []
    for argv in (["build-recs", *recs_argv(warehouse, inputs)], ["build-qa", *qa_argv(warehouse, inputs)]):
        code, out, err = _recqa(capsys, *argv)
        assert code == 0, err
        candidates += ["--candidate", out.strip().splitlines()[-1].removeprefix("candidate ")]
    assert _recqa(capsys, "publish", "--warehouse", warehouse, *candidates, "--force")[0] == 0

    items = _published(warehouse, ITEMS_TABLE, "item_id")
    assert items["i1"]["title"] == "Renamed item one" and items["i1"]["text"] == "now with a description"
    assert "i9" in items and "i2" not in items
    answers = _published(warehouse, ANSWERS_TABLE, "doc_id")
    assert answers["d1"]["answer"] == "A rewritten answer one." and "d9" in answers and "d2" not in answers
    users = _published(warehouse, USERS_TABLE, "user_id")
    assert "u3" not in users  # the forgotten user's vector is gone, though the file still holds their events
    assert set(users["newcomer"]["seen_item_ids"]) == {"i9", "i0"}  # known from logged events only
    assert all("i2" not in row["seen_item_ids"] for row in users.values())
    assert ITEMS in {c.kind for c in read_changes(warehouse).changes}  # the log keeps them for the builds after this one


class RecordingModel(FakeEncoder):
    """In the place of the pipelines' model: a vector of each text's own (crc of its words), every text recorded."""

    seen: list[str] = []

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        super().__init__(name)

    def load(self) -> "RecordingModel":
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        RecordingModel.seen.extend(texts)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        return vectors


@pytest.fixture
def qa_warehouse(tmp_path, monkeypatch):
    """A published answers-only warehouse built by build-qa with another model's name and other
    chunk sizes than the defaults, so what follows them cannot pass on the defaults."""
    from pipelines import build_qa, publish
    from pipelines.transforms import encode

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", RecordingModel)
    documents = tmp_path / "documents.jsonl"
    documents.write_text("".join(json.dumps({"doc_id": f"d{n}", "answer": f"Answer number {n} about boats."}) + "\n" for n in range(5)))
    warehouse = tmp_path / "warehouse"
    qa = build_qa.run(["--warehouse", str(warehouse), "--documents", str(documents), "--input-format", "contract", "--model", "recording-model",
                       "--chunk-words", "50", "--chunk-overlap", "7", "--ann-min-rows", "1000000"])
    publish.run(["--warehouse", str(warehouse), "--candidate", qa.candidate, "--force"])
    RecordingModel.seen = []
    return warehouse


def test_upsert_embeds_the_texts_as_the_served_table_was_and_no_service_embeds_them_again(qa_warehouse, tmp_path, capsys):
    from features.changes import text_digest
    from features.schemas import ANSWER_TEXT_COLUMN, QADocument
    from features.text import DEFAULT_CHUNK_OVERLAP_WORDS, DEFAULT_CHUNK_WORDS, answer_chunks
    from serving.reload import StoreFollower
    from serving.store import Store

    warehouse = qa_warehouse
    long_answer = " ".join(f"word{i}" for i in range(400))
    (tmp_path / "answers.jsonl").write_text(json.dumps({"doc_id": "fresh", "answer": long_answer}) + "\n")
    (tmp_path / "items.csv").write_text("item_id,title\nnew-item,Quokka lamp\n")
    code, out, err = _recqa(capsys, "upsert", "answers", str(tmp_path / "answers.jsonl"), "--warehouse", str(warehouse))
    assert code == 0, err
    code, items_out, _ = _recqa(capsys, "upsert", "items", str(tmp_path / "items.csv"), "--warehouse", str(warehouse))
    assert code == 0 and "embedded" not in items_out  # no items table is served: nothing to embed them for

    chunks = [c[ANSWER_TEXT_COLUMN] for c in answer_chunks(QADocument("fresh", long_answer), 50, 7)]  # as the table was built
    assert chunks != [c[ANSWER_TEXT_COLUMN] for c in answer_chunks(QADocument("fresh", long_answer), DEFAULT_CHUNK_WORDS, DEFAULT_CHUNK_OVERLAP_WORDS)]
    assert f"{len(chunks)} texts embedded with 'recording-model'" in out
    answer, item = read_new_changes_of(str(warehouse))
    assert answer.embeddings.model == "recording-model" and item.embeddings is None
    assert answer.embeddings.digests == tuple(map(text_digest, chunks))
    assert np.array_equal(answer.embeddings.vectors, RecordingModel().encode(chunks))

    RecordingModel.seen = []  # a service started now: its follower takes every vector from the log
    model = RecordingModel("recording-model")
    follower = StoreFollower(str(warehouse), lambda versions: Store(str(warehouse), model, versions, model), interval_seconds=60)
    assert follower.refresh() is True and RecordingModel.seen == []
    assert [hit.id for hit in follower.current().answers.answer("word7 word8", 1, "vector")] == ["fresh"]

    code, out, _ = _recqa(capsys, "upsert", "answers", str(tmp_path / "answers.jsonl"), "--warehouse", str(warehouse), "--no-embed")
    assert code == 0 and "embedded" not in out and read_new_changes_of(str(warehouse))[-1].embeddings is None


def test_upsert_without_its_model_writes_the_records_without_vectors_and_says_so(qa_warehouse, tmp_path, capsys, monkeypatch):
    from pipelines.transforms import encode

    class Missing(RecordingModel):
        def load(self):
            raise OSError("no such model here")

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", Missing)
    (tmp_path / "answers.jsonl").write_text(json.dumps({"doc_id": "fresh", "answer": "A new answer."}) + "\n")
    code, out, _ = _recqa(capsys, "upsert", "answers", str(tmp_path / "answers.jsonl"), "--warehouse", str(qa_warehouse))
    assert code == 0 and "warning: texts not embedded with 'recording-model' (OSError: no such model here)" in out and "--no-embed" in out
    assert [(c.key, c.embeddings) for c in read_new_changes_of(str(qa_warehouse))] == [("fresh", None)]


def read_new_changes_of(warehouse: str):
    """Every change of the log with its vectors, as a service's follower reads them."""
    from registry.log import change_cursor, read_new_changes

    return read_new_changes(warehouse, read_changes(warehouse).version, change_cursor(warehouse, 0))[0]
