"""Texts embedded ahead of a commit: the follower takes their vectors instead of embedding again."""

from __future__ import annotations

import numpy as np

from serving.embedding_memo import EmbeddingMemo
from tests.conftest import FakeEncoder


class Counting(FakeEncoder):
    """The fake encoder, recording the texts of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([np.random.default_rng(sum(map(ord, text))).normal(size=self.dimension) for text in texts]).astype(np.float32)


def test_primed_texts_are_taken_once_and_the_rest_encoded_in_one_call():
    inner = Counting()
    memo = EmbeddingMemo(inner)
    assert memo.prime(["a", "b", "a"]) == 2 and inner.calls == [["a", "b"]]
    assert memo.prime(["b"]) == 0  # held already: not embedded again
    vectors = memo.encode(["b", "c", "a", "c"])
    assert inner.calls == [["a", "b"], ["c"]]  # only the text not primed
    assert np.allclose(vectors, inner.encode(["b", "c", "a", "c"]))  # each text's own vector, in order
    assert memo.held == 0  # taken: a second read embeds again
    memo.encode(["a"])
    assert inner.calls[-1] == ["a"]


def test_the_memo_keeps_at_most_its_capacity_dropping_the_oldest():
    inner = Counting()
    memo = EmbeddingMemo(inner, capacity=3)
    memo.prime(["t1", "t2"])
    memo.prime(["t3", "t4"])
    assert memo.held == 3
    inner.calls.clear()
    memo.encode(["t1", "t2", "t3", "t4"])
    assert inner.calls == [["t1"]]  # the oldest was dropped; the others were held
