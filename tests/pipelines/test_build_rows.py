"""Whole builds: every row comes out once, with the vector of its own text and its own fit.

The encoder is TextHashEncoder (a vector that depends on the text alone), so a vector that
travelled to the wrong row through the pipeline shows here, while the rows themselves are
checked against the inputs as written.
"""

from __future__ import annotations

import json
from collections import defaultdict

import lance
import numpy as np
import pytest

from features.schemas import ANSWER_TEXT_COLUMN, ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from pipelines import build_qa, build_recs
from tests.conftest import text_vector

pytestmark = pytest.mark.usefixtures("text_model")


def _table(warehouse, name: str) -> list[dict]:
    return lance.dataset(str(warehouse / f"{name}.lance")).to_table().to_pylist()


def test_every_answer_chunk_is_written_once_with_the_vector_of_its_own_text(tmp_path):
    documents = {f"d{i}": (f"How do I fix thing {i}?", " ".join(f"word{i}x{j}" for j in range(3 + 5 * i))) for i in range(12)}
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"doc_id": d, "question": q, "answer": a}) + "\n" for d, (q, a) in documents.items()))
    build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(path), "--input-format", "contract",
                  "--chunk-words", "8", "--chunk-overlap", "2"])
    rows = _table(tmp_path / "wh", ANSWERS_TABLE)
    chunks = defaultdict(list)
    for row in rows:
        chunks[row["doc_id"]].append(row["chunk_id"])
        question, answer = documents[row["doc_id"]]
        assert (row["question"], row["answer"]) == (question, answer)
        assert row[ANSWER_TEXT_COLUMN].startswith(question)
        np.testing.assert_allclose(row["vector"], text_vector(row[ANSWER_TEXT_COLUMN]), rtol=0, atol=1e-6)
    assert set(chunks) == set(documents)
    assert all(sorted(ids) == list(range(len(ids))) for ids in chunks.values())  # each chunk once, none lost
    assert max(len(ids) for ids in chunks.values()) > 3  # long answers were split, so rows of one doc were told apart


def test_every_item_is_written_once_with_its_own_content_vector_and_popularity(tmp_path):
    events = [(f"u{u}", f"i{(u * 7 + j) % 9}") for u in range(30) for j in range(1 + u % 4)]
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{1_600_000_000 + n}\n" for n, (u, i) in enumerate(events)))
    catalogue = {f"i{i}": (f"Item {i}", f"About item {i}" if i % 2 else "") for i in range(12)}  # i9..i11: nobody's
    (tmp_path / "items.csv").write_text("item_id,title,text\n" + "".join(f"{i},{t},{x}\n" for i, (t, x) in catalogue.items()))
    build_recs.run(["--warehouse", str(tmp_path / "wh"), "--input-format", "contract", "--factors", "4",
                    "--interactions", str(tmp_path / "events.csv"), "--items", str(tmp_path / "items.csv")])
    items = _table(tmp_path / "wh", ITEMS_TABLE)
    buyers = defaultdict(set)
    for user, item in events:
        buyers[item].add(user)
    assert sorted(row["item_id"] for row in items) == sorted(catalogue)
    for row in items:
        title, text = catalogue[row["item_id"]]
        assert (row["title"], row["text"] or "") == (title, text)
        assert row["popularity"] == len(buyers[row["item_id"]])
        content = f"{title}. {text}" if text else title  # what an item's content vector encodes
        np.testing.assert_allclose(row["content_vector"], text_vector(content), rtol=0, atol=1e-6)
    assert sorted(row["user_id"] for row in _table(tmp_path / "wh", USERS_TABLE)) == sorted({u for u, _ in events})
