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

import numpy as np

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
    ones are ignored), and `dead`, a mask of the rows replaced or deleted since. Scoring reads
    only the postings of the query's terms, as numpy arrays, so its cost is the matching rows
    and not a Python loop over them.

    Appends are safe beside readers without a lock: each term's postings are arrays that grow
    into copies (a reader keeps the arrays it took), published as a new (rows, tfs, count)
    tuple after the row is written; a row's length is written before the row count grows,
    and readers never look at rows at or past their `n`.
    """

    def __init__(self) -> None:
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._lengths = np.zeros(64, np.int64)
        self._rows = 0

    def add(self, text: str) -> int:
        """Index one text; returns its row number (the count of texts before it)."""
        row, counts = self._rows, Counter(tokens(text))
        for term, tf in counts.items():
            rows, tfs, count = self._postings.get(term) or (np.zeros(4, np.int64), np.zeros(4, np.float64), 0)
            if count == len(rows):
                rows, tfs = _grown(rows, count), _grown(tfs, count)
            rows[count], tfs[count] = row, tf
            self._postings[term] = (rows, tfs, count + 1)
        if row == len(self._lengths):
            self._lengths = _grown(self._lengths, row)
        self._lengths[row] = sum(counts.values())
        self._rows = row + 1
        return row

    def length(self, row: int) -> int:
        """The token count of one row's text (its BM25 document length)."""
        if not 0 <= row < self._rows:
            raise IndexError(f"row {row} is not indexed ({self._rows} rows)")
        return int(self._lengths[row])

    def scores(
        self, query: str, n: int, dead: np.ndarray, corpus_size: int, average_length: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows below `n` not marked in `dead` (a boolean mask of at least n rows) that hold
        a query term, ascending, and the BM25 score of each.

        `corpus_size` is the document count of the whole served corpus (the table's rows and
        the live fresh ones) and `average_length` the fresh rows' mean length, so the scores
        sit on the scale of the table's own full-text scores (see the module).
        """
        lengths = self._lengths  # one array for the whole call: a later growth copies, never changes it
        found_rows, found_scores = [], []
        for term in set(tokens(query)):
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, tfs, count = posting
            cut = int(np.searchsorted(rows[:count], n))  # rows ascend: the overlay's are a prefix
            rows, tfs = rows[:cut], tfs[:cut]
            if cut:
                live = ~dead[rows]
                rows, tfs = rows[live], tfs[live]
            if not len(rows):
                continue
            df = len(rows)
            idf = math.log(1.0 + (corpus_size - df + 0.5) / (df + 0.5))
            norm = K1 * (1 - B + B * lengths[rows] / max(average_length, 1e-9))
            found_rows.append(rows)
            found_scores.append(idf * tfs * (K1 + 1) / (tfs + norm))
        if not found_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        rows, inverse = np.unique(np.concatenate(found_rows), return_inverse=True)
        return rows, np.bincount(inverse, weights=np.concatenate(found_scores), minlength=len(rows))


def _grown(array: np.ndarray, used: int) -> np.ndarray:
    """A copy of `array` with twice the room and its first `used` entries."""
    grown = np.zeros(max(2 * len(array), 4), array.dtype)
    grown[:used] = array[:used]
    return grown
