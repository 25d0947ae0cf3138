"""A commit's texts embedded before it, for the change log (the writer's `before_commit`).

The texts are those a service's follower would embed for the changes under the published
release (its answers' chunking, whether it serves items: `published_texts`),
so every follower finds their vectors in the log and embeds nothing (features/change_vectors.py).
The release is read again at most every `check_seconds`: a follower that serves another
chunking for a while only embeds what it finds no vector for, which costs time, never a result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from features.change_vectors import change_texts, embed_changes
from features.changes import Change
from features.encoders import Encoder
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE
from features.text import chunking_of
from pipelines.lance_io import published_metadata
from registry.log import published_versions

# Texts a commit embeds ahead at most: a big commit (1,000 long answers) would otherwise hold its
# requests' 2xx past the request timeout; the followers embed the rest after the commit.
MAX_TEXTS = 256
CHECK_SECONDS = 5.0

Release = tuple[tuple[int, int] | None, bool]  # (answers' chunking or None, items served)


def published_texts(warehouse: str) -> Release:
    """Which texts of an upsert the services embed under the published release: the answers
    table's chunking (None: no answers table published) and whether an items table is."""
    versions = published_versions(warehouse)
    answers = published_metadata(warehouse, ANSWERS_TABLE, versions)
    return (chunking_of(answers) if answers is not None else None), published_metadata(warehouse, ITEMS_TABLE, versions) is not None


class AheadEmbedder:
    """Embeds a commit's texts with `encoder`, the model the services embed the log's texts with."""

    def __init__(self, encoder: Encoder, release: Callable[[], Release], max_texts: int = MAX_TEXTS,
                 check_seconds: float = CHECK_SECONDS) -> None:
        self._encoder, self._release, self.max_texts, self._check_seconds = encoder, release, max_texts, check_seconds
        self._known: Release | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def released(self) -> Release:
        """The published release's chunking and items, read again once `check_seconds` have passed."""
        with self._lock:
            if time.monotonic() - self._checked >= self._check_seconds:
                self._known, self._checked = self._release(), time.monotonic()
            return self._known  # type: ignore[return-value]

    def __call__(self, changes: Sequence[Change]) -> list[Change]:
        chunking, items = self.released()  # nothing published yet: no texts, the build embeds them
        return embed_changes(self._encoder, changes, lambda change: change_texts(change, chunking, items), self.max_texts)
