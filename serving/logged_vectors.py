"""Vectors of the change log's texts: embedded once, by the writer, and read by every follower.

The write API's process embeds a commit's texts before the commit (ingest/ahead.py, its
writer's `before_commit`; `recqa upsert` does the same) and the log keeps their
vectors beside the records (features/changes.Embeddings). A follower stepping through the log
then takes each text's vector from the rows it reads (`LoggedVectors`) instead of running the
model again: the service's own follower, another worker's, and a restarted service's, which
would otherwise embed every upsert since its release's build before it is ready.

Texts are matched by digest, so what the writer did not embed (past ingest/ahead.py's cap,
`recqa upsert --no-embed`, another model, other chunk sizes) is embedded by the follower.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from features.changes import Change, text_digest
from features.encoders import Encoder


class LoggedVectors:
    """The `encode` of one step of a follower: the vectors the step's changes brought for the
    texts asked (the same model's, by digest), the other texts encoded by `inner` in one call."""

    def __init__(self, inner: Encoder, changes: Iterable[Change]) -> None:
        self.inner = inner
        self._held: dict[bytes, np.ndarray] = {}
        latest = {(change.kind, change.key): change for change in changes}  # an id upserted again: its last texts only
        for change in latest.values():
            found = change.embeddings
            if found is not None and found.model == inner.name and found.vectors.shape[1] == inner.dimension:
                self._held.update(zip(found.digests, found.vectors))
        self.taken = self.embedded = 0  # texts served from the log, and encoded here

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.inner.dimension), dtype=np.float32)
        held = [self._held.get(text_digest(text)) for text in texts]
        missing = list(dict.fromkeys(text for text, vector in zip(texts, held) if vector is None))
        encoded = dict(zip(missing, np.asarray(self.inner.encode(missing), dtype=np.float32))) if missing else {}
        self.taken += sum(vector is not None for vector in held)
        self.embedded += len(missing)
        return np.stack([encoded[text] if vector is None else vector for text, vector in zip(texts, held)])
