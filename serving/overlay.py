"""The changes written since the served tables were built, read from the change log and
turned into what the read-side classes search beside the tables.

A build applies the change log up to one version and records it in its tables' metadata
(META_CHANGES); what came after that is the overlay. The follower reads only what is new in
the log at each step (registry/log.read_new_changes), folds it onto the overlay before
(`fold(new, start=...)`), and embeds and indexes only the answers and items those new
changes touch: a step costs what was written since the last one, not everything written
since the build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from features.bm25 import DEFAULT_ANALYZER, Analyzer
from features.changes import META_CHANGES, ChangeSet
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN
from features.text import DEFAULT_CHUNK_OVERLAP_WORDS, DEFAULT_CHUNK_WORDS, answer_chunks, item_text
from serving.fresh_answers import COMPACT_SLACK, FreshAnswers, FreshChunks

# How often the follower checks the change log for new writes: the 2 s visibility target
# leaves room for the check, the read of the new rows and the embedding of what they bring.
CHANGES_POLL_SECONDS = 0.5

Encode = Callable[[list[str]], np.ndarray]


def applied_changes(metadata: Mapping[bytes, bytes] | None) -> int:
    """The change-log version a table's build applied (0: none, e.g. built before the log existed)."""
    value = (metadata or {}).get(META_CHANGES, b"0")
    return int(value or 0)


def unit_vectors(encode: Encode, texts: list[str]) -> np.ndarray:
    """The texts' embeddings scaled to unit length (how the tables store them)."""
    vectors = np.asarray(encode(texts), dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def advance_answers(
    previous: FreshAnswers | None, changes: ChangeSet, changed: Iterable[str], encode: Encode, corpus_size: int,
    chunking: tuple[int, int] = (DEFAULT_CHUNK_WORDS, DEFAULT_CHUNK_OVERLAP_WORDS), analyzer: Analyzer = DEFAULT_ANALYZER,
) -> FreshAnswers:
    """The fresh answers after a step of the log: `changes` is the fold of the log so far and
    `changed` the doc_ids the step's new changes touched; only those are chunked (as the
    table's build chunked, `chunking`) and embedded.
    Their earlier rows are retired; the store is compacted when retired rows dominate it."""
    previous = previous or FreshAnswers(FreshChunks(analyzer), corpus_size=corpus_size)  # the table's terms (`analyzer`)
    documents, doc_rows = dict(previous.documents), dict(previous.doc_rows)
    # rows past the previous overlay's n were added by a step that then failed: never served
    dead, length_total = set(previous.dead) | set(range(previous.n, len(previous.chunks.rows))), previous.length_total
    bm25 = previous.chunks.bm25
    rows: list[tuple[str, dict]] = []
    for doc_id in dict.fromkeys(changed):
        retired = doc_rows.pop(doc_id, ())
        dead.update(retired)
        length_total -= sum(bm25.length(row) for row in retired)
        document = changes.answers.get(doc_id)
        if document is None:
            documents[doc_id] = None
            continue
        chunks = answer_chunks(document, *chunking)
        rows += [(doc_id, chunk) for chunk in chunks]
        documents[doc_id] = {
            "doc_id": doc_id, "question": document.question, "text": document.answer,
            "source": document.source, "tags": list(document.tags), "chunks": len(chunks),
        }
    store = previous.chunks
    if len(dead) > (previous.n - len(dead)) + COMPACT_SLACK:  # retired rows dominate: copy the live ones
        store, doc_rows, dead = *_compacted(store, doc_rows), set()
        length_total = sum(store.bm25.length(row) for kept in doc_rows.values() for row in kept)
    vectors = unit_vectors(encode, [chunk[ANSWER_TEXT_COLUMN] for _, chunk in rows]) if rows else []
    for (doc_id, chunk), vector in zip(rows, vectors):
        row = store.add(chunk, vector)
        doc_rows[doc_id] = doc_rows.get(doc_id, ()) + (row,)
        length_total += store.bm25.length(row)
    return FreshAnswers(
        store, len(store.rows), frozenset(dead), frozenset(changes.answers), documents, doc_rows, corpus_size, length_total
    )


def _compacted(old: FreshChunks, doc_rows: Mapping[str, tuple[int, ...]]) -> tuple[FreshChunks, dict[str, tuple[int, ...]]]:
    """A new store holding only the live rows of `old`, and where each document's rows now are."""
    store, moved = FreshChunks(old.bm25.analyzer), {}
    for doc_id, rows in doc_rows.items():
        kept = []
        for row in rows:
            chunk = dict(old.rows[row])
            kept.append(store.add(chunk, chunk.pop(ANSWER_INDEX.column)))
        moved[doc_id] = tuple(kept)
    return store, moved


def advance_items(previous: Mapping[str, np.ndarray], changes: ChangeSet, changed: Iterable[str], encode: Encode) -> dict[str, np.ndarray]:
    """The content embedding of each upserted item after a step of the log, of the text
    build-recs encodes (`item_text`); only the items the step's changes touched are encoded."""
    content = dict(previous)
    upserted = []
    for item_id in dict.fromkeys(changed):
        content.pop(item_id, None)
        if (item := changes.items.get(item_id)) is not None:
            upserted.append(item)
    if upserted:
        content.update(zip((item.item_id for item in upserted), unit_vectors(encode, [item_text(item) for item in upserted])))
    return content
