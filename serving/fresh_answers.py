"""The answers written since the answers table's build, searched beside it.

The follower adds the chunks of each upserted answer to `FreshChunks`, an append-only store
(rows, unit vectors, BM25 postings) shared by every overlay made from it; an overlay,
`FreshAnswers`, is how many of its rows existed when it was made and which of those a later
replace or delete has retired. So a write costs the embedding and indexing of its own
chunks, not a rebuild of everything written since the build, and a reader never waits on
the follower. The store is compacted (its live rows copied into a new one) when retired rows
outnumber the live ones.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from features.bm25 import DEFAULT_ANALYZER, Analyzer, PostingsBM25
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN

# Retired rows a store may hold beyond its live ones before it is compacted.
COMPACT_SLACK = 1000


class FreshChunks:
    """Append-only chunk rows with their unit vectors and BM25 postings (see the module).

    One writer: the follower, which only ever extends the newest overlay's store.
    """

    def __init__(self, analyzer: Analyzer = DEFAULT_ANALYZER) -> None:
        self.rows: list[dict] = []
        self.bm25 = PostingsBM25(analyzer)
        self._vectors = np.zeros((0, 0), np.float32)  # sized by the first vector added

    def vectors(self, n: int) -> np.ndarray:
        """The first n rows' vectors (a view: rows added later never change it)."""
        return self._vectors[:n]

    def add(self, row: dict, vector: np.ndarray) -> int:
        """Append one chunk (its table columns and unit vector); returns its row number."""
        index = len(self.rows)
        if index == len(self._vectors):  # grow into a copy: readers keep the old array
            grown = np.zeros((max(2 * index, 64), len(vector)), np.float32)
            if index:
                grown[:index] = self._vectors
            self._vectors = grown
        self._vectors[index] = vector
        self.bm25.add(row[ANSWER_TEXT_COLUMN])
        self.rows.append({**row, ANSWER_INDEX.column: vector})  # last: a reader's n never passes it
        return index


@dataclass(frozen=True)
class FreshAnswers:
    """One overlay of fresh answers over the table (serving/overlay.py makes it).

    `touched`: every doc_id whose table rows no longer count (replaced or deleted).
    `documents`: doc_id -> the document as `AnswerIndex.document` gives it, or None when deleted.
    `doc_rows`: the live rows of each upserted document in `chunks`, below `n`.
    """

    chunks: FreshChunks
    n: int = 0
    dead: frozenset[int] = frozenset()
    touched: frozenset[str] = frozenset()
    documents: Mapping[str, dict | None] = field(default_factory=dict)
    doc_rows: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    corpus_size: int = 0  # chunks in the served table version
    length_total: int = 0  # tokens in the live rows, for BM25's average length

    @property
    def live(self) -> int:
        return self.n - len(self.dead)

    @functools.cached_property
    def dead_mask(self) -> np.ndarray:
        """`dead` as a boolean mask over the overlay's n rows, made once per overlay (searches index it)."""
        mask = np.zeros(self.n, bool)
        mask[np.fromiter(self.dead, np.int64, len(self.dead))] = True
        mask.flags.writeable = False
        return mask

    def vector_rows(self, vector: np.ndarray, sources: list[str] | None, tags: list[str] | None, depth: int) -> list[dict]:
        """The `depth` nearest live chunks the filters allow, exactly by cosine (ties by row),
        with `_distance` as Lance reports it (1 - cosine)."""
        if not self.live:
            return []
        cosine = self.chunks.vectors(self.n) @ (np.asarray(vector, dtype=np.float32) / max(float(np.linalg.norm(vector)), 1e-12))
        cosine[self.dead_mask] = -np.inf
        rows = np.arange(self.n)
        if sources is None and tags is None and self.live > depth > 0:  # no filter: only the depth best can be returned
            kept = cosine >= np.partition(cosine, self.n - depth)[self.n - depth]  # and every row tied with the last
            rows = rows[kept]
        order = rows[np.lexsort((rows, -cosine[rows]))][: self.live]
        return self._take(((int(i), {"_distance": 1.0 - float(cosine[i])}) for i in order), sources, tags, depth)

    def keyword_rows(self, question: str, sources: list[str] | None, tags: list[str] | None, depth: int) -> list[dict]:
        """The `depth` best live chunks the filters allow that match a query word, with their BM25 `_score`."""
        if not self.live:
            return []
        rows, scores = self.chunks.bm25.scores(question, self.n, self.dead_mask, self.corpus_size + self.live, self.length_total / self.live)
        order = np.lexsort((rows, -scores))
        return self._take(((int(rows[i]), {"_score": float(scores[i])}) for i in order if scores[i] > 0), sources, tags, depth)

    def _take(self, ranked, sources: list[str] | None, tags: list[str] | None, depth: int) -> list[dict]:
        out: list[dict] = []
        for row, extra in ranked:
            found = self.chunks.rows[row]
            if (sources is None or found["source"] in sources) and (tags is None or bool(set(found["tags"] or ()) & set(tags))):
                out.append({**found, **extra})
                if len(out) == depth:
                    break
        return out
