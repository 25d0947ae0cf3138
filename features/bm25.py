"""A small in-process BM25 scorer for the few answer chunks written since the last build.

Why not a second Lance table with its own full-text index: the serving process never writes
tables (the layout rule), and a handful of fresh chunks is scored faster in Python than a
dataset is written. Tokens are lower-cased alphanumeric runs without the English stop words
Lance's index drops; there is no stemmer installed, so words match exactly. Scores use
Lance's BM25 (k1 1.2, b 0.75) with the document count of the whole served corpus, so they
sit on the scale of the table's own BM25 scores; a term's document frequency is counted in
the fresh chunks only, which favours them slightly until the next build indexes them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

K1 = 1.2
B = 0.75
# The English stop words of Lance's (tantivy's) tokenizer.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they this to was will with".split()
)
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, stop words dropped."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in STOP_WORDS]


class BM25:
    """BM25 over a fixed list of texts; `corpus_size` is the served corpus they join (>= their count)."""

    def __init__(self, texts: Sequence[str], corpus_size: int = 0) -> None:
        self._counts = [Counter(tokens(text)) for text in texts]
        self._lengths = [sum(counts.values()) for counts in self._counts]
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        self._frequency = Counter(term for counts in self._counts for term in counts)
        self._size = max(corpus_size, len(texts))

    def scores(self, query: str) -> list[float]:
        """One BM25 score per text, in order (0 where no query term occurs)."""
        terms = set(tokens(query))
        out = []
        for counts, length in zip(self._counts, self._lengths):
            score = 0.0
            for term in terms & counts.keys():
                df = self._frequency[term]
                idf = math.log(1.0 + (self._size - df + 0.5) / (df + 0.5))
                tf = counts[term]
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / max(self._average, 1e-9)))
            out.append(score)
        return out
