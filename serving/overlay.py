"""The changes written since the served tables were built, read from the change log and
turned into what the read-side classes search beside the tables.

A build applies the change log up to one version and records it in its tables' metadata
(META_CHANGES); what came after that is the overlay: `fold(read_changes(after=applied))`,
separately for the recommendation tables and the answers table, since each is built on its
own snapshot. Upserted answers and items are embedded here with the service's encoder, once:
a text already embedded for the previous overlay is not encoded again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from features.bm25 import BM25
from features.changes import META_CHANGES, ChangeSet, fold
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN
from features.text import answer_chunks, item_text
from registry.log import read_changes
from serving.answers import FreshAnswers

# How often the follower checks the change log for new writes: the 2 s visibility target
# leaves room for the check, the read of the log and the embedding of what it brings.
CHANGES_POLL_SECONDS = 0.5


def applied_changes(metadata: Mapping[bytes, bytes] | None) -> int:
    """The change-log version a table's build applied (0: none, e.g. built before the log existed)."""
    value = (metadata or {}).get(META_CHANGES, b"0")
    return int(value or 0)


def changes_after(warehouse: str, version: int, applied: int) -> ChangeSet:
    """What the log at `version` holds beyond the `applied` version a build has seen, folded."""
    if version <= applied:
        return ChangeSet()
    return fold(read_changes(warehouse, version=version, after=applied).changes)


class Embeddings:
    """Texts embedded by the service's encoder, kept between overlays so each is encoded once."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray]) -> None:
        self._encode = encode
        self._vectors: dict[str, np.ndarray] = {}

    def of(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`, in order; only the ones not seen before go to the encoder."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            vectors = np.asarray(self._encode(missing), dtype=np.float32)
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            self._vectors.update(zip(missing, vectors))
        return np.stack([self._vectors[text] for text in texts]) if texts else np.zeros((0, 0), np.float32)

    def keep_only(self, texts: Sequence[str]) -> None:
        """Forget what the current overlay no longer uses (after a build applied it, or a delete)."""
        wanted = set(texts)
        self._vectors = {text: vector for text, vector in self._vectors.items() if text in wanted}


def fresh_answers(changes: ChangeSet, embeddings: Embeddings, corpus_size: int) -> FreshAnswers:
    """The upserted and deleted answers of `changes`, embedded and keyword-indexed for search."""
    rows: list[dict] = []
    documents: dict[str, dict | None] = {doc_id: None for doc_id in changes.deleted("answers")}
    for document in changes.upserted_answers():
        chunks = answer_chunks(document)
        rows += chunks
        documents[document.doc_id] = {
            "doc_id": document.doc_id,
            "question": document.question,
            "text": document.answer,
            "source": document.source,
            "tags": list(document.tags),
            "chunks": len(chunks),
        }
    texts = [row[ANSWER_TEXT_COLUMN] for row in rows]
    vectors = embeddings.of(texts)
    embeddings.keep_only(texts)
    rows = [{**row, ANSWER_INDEX.column: vector} for row, vector in zip(rows, vectors)]
    return FreshAnswers(frozenset(changes.answers), documents, tuple(rows), vectors, BM25(texts, corpus_size + len(rows)))


def item_vectors(changes: ChangeSet, embeddings: Embeddings) -> dict[str, np.ndarray]:
    """The content embedding of each upserted item, of the text build-recs encodes (`item_text`)."""
    items = changes.upserted_items()
    texts = [item_text(item) for item in items]
    vectors = embeddings.of(texts)
    embeddings.keep_only(texts)
    return {item.item_id: vector for item, vector in zip(items, vectors)}
