"""Vectors of the change log's texts: embedded once, by the writer, and read by every follower.

The service's writer embeds a commit's texts before the commit (`embed_changes`, the ingest
writer's `before_commit`) and the log keeps their vectors beside the records
(features/changes.Embeddings). A follower stepping through the log then takes each text's
vector from the rows it reads (`LoggedVectors`) instead of running the model again: the
writer's own follower, another worker's, and a restarted service's, which would otherwise
embed every upsert since its release's build before it is ready.

Texts are matched by digest, so what the writer did not embed (past EMBED_AHEAD_MAX_TEXTS,
the CLI's writes, another model, other chunk sizes) is embedded by the follower as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from features.changes import DELETE, UPSERT, Change, Embeddings, text_digest
from features.encoders import Encoder

# Texts a commit embeds ahead at most: a big commit (1,000 long answers) would otherwise hold its
# requests' 2xx past the request timeout; the follower embeds the rest after the commit.
EMBED_AHEAD_MAX_TEXTS = 256


def embed_changes(encoder: Encoder, changes: Sequence[Change], texts_of: Callable[[Change], list[str]]) -> list[Change]:
    """The changes with `embeddings` set on the upserts whose texts (`texts_of`: what the
    follower will embed for them) were embedded, in one call of the encoder: whole changes in
    order while their texts fit EMBED_AHEAD_MAX_TEXTS. An upsert a later change of the same
    commit replaces or deletes is not embedded: no follower ever embeds it."""
    last = {(change.kind, change.key): index for index, change in enumerate(changes) if change.op in (UPSERT, DELETE)}
    chosen: dict[int, list[str]] = {}
    count = 0
    for index, change in enumerate(changes):
        if change.op != UPSERT or last[(change.kind, change.key)] != index:
            continue
        texts = texts_of(change)
        if texts and count + len(texts) <= EMBED_AHEAD_MAX_TEXTS:
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


class LoggedVectors:
    """An Encoder for one step of a follower: the vectors the step's changes brought for the
    texts asked (the same model's, by digest), the other texts encoded by `inner` in one call."""

    def __init__(self, inner: Encoder, changes: Iterable[Change]) -> None:
        self.inner = inner
        self._held: dict[bytes, np.ndarray] = {}
        for change in changes:
            found = change.embeddings
            if found is not None and found.model == inner.name and found.vectors.shape[1] == inner.dimension:
                self._held.update(zip(found.digests, found.vectors))
        self.taken = self.embedded = 0  # texts served from the log, and encoded here

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [text_digest(text) for text in texts]
        missing = list(dict.fromkeys(text for text, key in zip(texts, keys) if key not in self._held))
        encoded = dict(zip(missing, np.asarray(self.inner.encode(missing), dtype=np.float32))) if missing else {}
        self.taken += len(texts) - sum(1 for key in keys if key not in self._held)
        self.embedded += len(missing)
        return np.stack([self._held[key] if key in self._held else encoded[text] for text, key in zip(texts, keys)])
