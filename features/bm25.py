"""In-process BM25 postings for the answer chunks written since the last build.

Why not a second Lance table with its own full-text index: the serving process never writes
tables (the layout rule), and fresh chunks are indexed here the moment they are read from
the change log. Tokens are lower-cased alphanumeric runs without the English stop words
Lance's index drops; there is no stemmer installed, so words match exactly. Scores use
Lance's BM25 (k1 1.2, b 0.75) with the document count of the whole served corpus, so they
sit on the scale of the table's own BM25 scores; a term's document frequency is counted in
the fresh chunks only, which favours them slightly until the next build indexes them.
"""

from __future__ import annotations

import math
import re
from collections import Counter

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


class PostingsBM25:
    """BM25 postings of texts added one at a time, never changed after: one index serves every
    overlay while the follower appends to it.

    A reader passes what it knows of it: `n`, the rows added when its overlay was made (later
    ones are ignored), and `dead`, the rows replaced or deleted since. Scoring walks only the
    postings of the query's terms, so its cost is the matching rows, not all of them.
    Appends are safe beside readers: a row's postings go in before its length, and readers
    never look at rows at or past their `n`.
    """

    def __init__(self) -> None:
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._lengths: list[int] = []

    def add(self, text: str) -> int:
        """Index one text; returns its row number (the count of texts before it)."""
        row, counts = len(self._lengths), Counter(tokens(text))
        for term, tf in counts.items():
            self._postings.setdefault(term, []).append((row, tf))
        self._lengths.append(sum(counts.values()))
        return row

    def length(self, row: int) -> int:
        """The token count of one row's text (its BM25 document length)."""
        return self._lengths[row]

    def scores(self, query: str, n: int, dead: frozenset[int], corpus_size: int, average_length: float) -> dict[int, float]:
        """The BM25 score of every live row below `n` that holds a query term.

        `corpus_size` is the document count of the whole served corpus (the table's rows and
        the live fresh ones) and `average_length` the fresh rows' mean length, so the scores
        sit on the scale of the table's own full-text scores (see the module).
        """
        out: dict[int, float] = {}
        for term in set(tokens(query)):
            live = [(row, tf) for row, tf in self._postings.get(term, ()) if row < n and row not in dead]
            if not live:
                continue
            df = len(live)
            idf = math.log(1.0 + (corpus_size - df + 0.5) / (df + 0.5))
            for row, tf in live:
                norm = K1 * (1 - B + B * self._lengths[row] / max(average_length, 1e-9))
                out[row] = out.get(row, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
        return out
