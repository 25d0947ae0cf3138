"""The vectors kept with logged changes: which texts are embedded, how they are read back, and
when a follower takes them instead of embedding."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from features.change_vectors import change_texts, embed_changes
from features.changes import ANSWERS, ITEMS, Embeddings, changes_from_arrow, change_rows, parse_records, rows_to_arrow, text_digest
from serving.logged_vectors import LoggedVectors
from tests.conftest import FakeEncoder


class Words(FakeEncoder):
    """A vector per text (its length in words), every call recorded."""

    def __init__(self, name: str = "m", dimension: int = 4) -> None:
        super().__init__(name, dimension)
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t.split())] * self.dimension for t in texts], dtype=np.float32)


def _answer(doc_id: str, words: int):
    return parse_records(ANSWERS, [{"doc_id": doc_id, "answer": " ".join(f"w{i}" for i in range(words))}])[0]


def test_past_the_cap_changes_are_taken_whole_first_fit():
    items = parse_records(ITEMS, [{"item_id": "i", "title": "An item"}])[0]
    changes = _answer("long", 30) + _answer("longer", 30) + items  # 2, 2 and 1 texts at 20 words a chunk
    texts = [change_texts(c, (20, 5), items=True) for c in changes]
    assert [len(t) for t in texts] == [2, 2, 1]
    ready = embed_changes(Words(), changes, lambda c: change_texts(c, (20, 5), items=True), max_texts=3)
    assert [c.embeddings is not None for c in ready] == [True, False, True]  # the second does not fit; the item after it does
    assert ready[0].embeddings.digests == tuple(map(text_digest, texts[0]))


def test_texts_follow_the_served_parts_and_chunking():
    answer = _answer("a", 30)[0]
    assert change_texts(answer, None, items=True) == []  # no answers served
    assert len(change_texts(answer, (20, 5), items=False)) == 2 and len(change_texts(answer, (40, 5), items=False)) == 1


def test_a_follower_takes_only_its_own_models_vectors_of_the_latest_upsert_of_an_id():
    encoder = Words()
    first, second = _answer("a", 3) + _answer("a", 5)
    logged = [embed_changes(encoder, [c], lambda c: change_texts(c, (20, 5), items=False))[0] for c in (first, second)]
    texts = change_texts(second, (20, 5), items=False)
    follower = Words()
    assert np.array_equal(LoggedVectors(follower, logged).encode(texts), encoder.encode(texts)) and follower.calls == []
    # the earlier upsert's vector is not held: its text is embedded if asked
    LoggedVectors(follower, logged).encode(change_texts(first, (20, 5), items=False))
    assert follower.calls == [change_texts(first, (20, 5), items=False)]
    for other in (Words(name="another-model"), Words(dimension=8)):  # by name and by dimension
        LoggedVectors(other, logged).encode(texts)
        assert other.calls == [texts]


def test_vectors_read_back_from_sliced_and_chunked_tables_with_nulls_and_bad_rows():
    changes = _answer("a", 30) + _answer("b", 3) + _answer("c", 3) + _answer("d", 45)
    ready = embed_changes(Words(dimension=3), changes, lambda c: [] if c.key == "c" else change_texts(c, (20, 5), items=False))
    rows = change_rows(ready, datetime.now(timezone.utc), "batch")
    rows[0]["vectors"] = rows[0]["vectors"][:-1]  # two texts, five values: not a vector per text, read as none
    table = rows_to_arrow(rows)
    shuffled = pa.concat_tables([table.slice(2), table.slice(0, 2)])  # two chunks, each a slice
    read = changes_from_arrow(shuffled)
    assert [c.key for c in read] == ["c", "d", "a", "b"] == [c.key for c in ready[2:] + ready[:2]]
    assert [c.embeddings is None for c in read] == [True, False, True, False]
    for got, want in ((read[1], ready[3]), (read[3], ready[1])):
        assert got.embeddings.digests == want.embeddings.digests and np.array_equal(got.embeddings.vectors, want.embeddings.vectors)


def test_malformed_embeddings_cannot_be_made():
    with pytest.raises(ValueError, match="16 bytes"):
        Embeddings("m", (b"short",), np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="digests for vectors"):
        Embeddings("m", (text_digest("x"),), np.zeros((2, 2), dtype=np.float32))
    assert dataclasses.replace(_answer("a", 1)[0], embeddings=None) == _answer("a", 1)[0]
