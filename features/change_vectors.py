"""Which texts of a logged change are embedded, and embedding them once, for the log.

An upsert's texts are what a service's follower embeds for it (serving/overlay.py): an
answer document's chunks as the served answers table chunks them, an item's text as
build-recs makes it. Whoever writes the change with a model at hand (the service's writer,
`recqa upsert`) embeds them before the commit and keeps the vectors in the row
(features/changes.Embeddings), so no follower embeds them again.

Pure apart from the encoder it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from features.changes import ANSWERS, DELETE, ITEMS, UPSERT, Change, Embeddings, fold, text_digest
from features.encoders import Encoder
from features.schemas import ANSWER_TEXT_COLUMN
from features.text import answer_chunks, item_text


def change_texts(change: Change, chunking: tuple[int, int] | None, items: bool) -> list[str]:
    """The texts a follower embeds for an upsert: an answer's chunks when `chunking` (words,
    overlap: the served answers table's) is given, an item's text when `items`; else none."""
    if change.op != UPSERT:
        return []
    if change.kind == ANSWERS and chunking is not None:
        return [chunk[ANSWER_TEXT_COLUMN] for chunk in answer_chunks(fold([change]).answers[change.key], *chunking)]
    if change.kind == ITEMS and items:
        return [item_text(fold([change]).items[change.key])]
    return []


def embed_changes(encoder: Encoder, changes: Sequence[Change], texts_of: Callable[[Change], list[str]],
                  max_texts: int | None = None) -> list[Change]:
    """The changes with `embeddings` set on the upserts whose texts (`texts_of`) were embedded,
    in one call of the encoder. With `max_texts`, changes are taken whole, first fit: each in
    order whose texts still fit beside those taken (a long answer that does not fit is left to
    the follower; a shorter one after it may still be taken). An upsert a later change of the
    same changes replaces or deletes is not embedded: no follower ever embeds it."""
    last = {(change.kind, change.key): index for index, change in enumerate(changes) if change.op in (UPSERT, DELETE)}
    chosen: dict[int, list[str]] = {}
    count = 0
    for index, change in enumerate(changes):
        if change.op != UPSERT or last[(change.kind, change.key)] != index:
            continue
        texts = texts_of(change)
        if texts and (max_texts is None or count + len(texts) <= max_texts):
            chosen[index], count = texts, count + len(texts)
    if not chosen:
        return list(changes)
    unique = list(dict.fromkeys(text for texts in chosen.values() for text in texts))
    by_text = dict(zip(unique, np.asarray(encoder.encode(unique), dtype=np.float32)))
    return [
        dataclasses.replace(change, embeddings=Embeddings(encoder.name, tuple(map(text_digest, chosen[index])), np.stack([by_text[t] for t in chosen[index]])))
        if index in chosen else change
        for index, change in enumerate(changes)
    ]
