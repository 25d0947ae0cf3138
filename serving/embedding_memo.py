"""Texts embedded ahead of need: a write's texts are embedded before its commit is acknowledged.

The follower embeds the texts of the changes it reads (serving/overlay.py). Done there, the
embedding sits between a write's 2xx and its visibility; done before the commit, on the
writer's thread and in one call per commit, it sits before the 2xx instead, and the follower
finds the vectors here. The work is the same; what moves is when the caller waits.

The follower takes each vector once; what it never takes (a commit that failed, a write
through the CLI's own process) is dropped oldest-first past `capacity`, so the memo stays
bounded. A text not held is embedded by the follower as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from features.encoders import Encoder

DEFAULT_CAPACITY = 4_096  # texts (about 6 MB of 384-d float32): several seconds of writes at the 50 writes/s


class EmbeddingMemo:
    """An Encoder that hands out vectors primed ahead of time, and encodes the rest with `inner`."""

    def __init__(self, inner: Encoder, capacity: int = DEFAULT_CAPACITY) -> None:
        self.inner = inner
        self.capacity = capacity
        self._held: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def held(self) -> int:
        """Texts held now (not a __len__: an empty memo must not be falsy where an Encoder is expected)."""
        return len(self._held)

    def prime(self, texts: Sequence[str]) -> int:
        """Embed the texts not held yet, in one call, and hold them; how many were embedded."""
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._held))
        if not missing:
            return 0
        vectors = np.asarray(self.inner.encode(missing), dtype=np.float32)
        with self._lock:
            self._held.update(zip(missing, vectors))
            while len(self._held) > self.capacity:
                self._held.popitem(last=False)
        return len(missing)

    def encode(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors: held ones taken out of the memo, the others encoded in one call."""
        with self._lock:
            found = {text: self._held.pop(text) for text in dict.fromkeys(texts) if text in self._held}
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            found.update(zip(missing, np.asarray(self.inner.encode(missing), dtype=np.float32)))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[text] for text in texts])
