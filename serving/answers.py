"""The answers table: keyword (BM25), vector and hybrid search, one result per answer."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from features.encoders import Encoder
from features.filters import answer_condition
from features.retrieval import distance_to_similarity, mmr, rrf_fuse
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN, IndexConfig
from serving.tables import Hit, check_encoder, vector_query, where

# Chunks fetched per answer asked for: long answers have several chunks near the question.
CHUNK_OVERFETCH = 4
# Keyword searches run here, overlapping the question's encoding; Lance does the work in Rust
# with the GIL released, so a thread per concurrent request is cheap.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="recqa-keyword")


class AnswerIndex:
    """Searches one version of the answers table; `index` sets the vector search parameters."""

    def __init__(self, table, encoder: Encoder, index: IndexConfig = ANSWER_INDEX, exact: bool = False) -> None:
        check_encoder(table, encoder)
        self._answers = table
        self._encoder = encoder
        self._index = index
        self._exact = exact  # brute force over every row: the reference ANN recall is measured against

    def answer(
        self,
        question: str,
        k: int,
        mode: str = "hybrid",
        sources: list[str] | None = None,
        tags: list[str] | None = None,
        diversity: float | None = None,
        vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The k best answers by `mode`; an answer counts once, by its best chunk.

        `hybrid` fuses the keyword and vector rankings by reciprocal rank; `diversity`
        re-ranks the candidates by maximal marginal relevance.
        """
        pending = self.start(question, k, mode, sources, tags, diversity)
        if vector is None and (mode != "keyword" or diversity is not None):
            vector = self._encoder.encode([question])[0]
        return pending.finish(vector)

    def start(
        self,
        question: str,
        k: int,
        mode: str = "hybrid",
        sources: list[str] | None = None,
        tags: list[str] | None = None,
        diversity: float | None = None,
    ) -> "PendingAnswer":
        """Begin answering before the question's vector exists: the keyword search (which
        needs no vector) runs on a background thread while the caller encodes."""
        return PendingAnswer(self, question, k, mode, answer_condition(sources, tags), diversity)

    def _keyword(self, question: str, condition: str | None, depth: int) -> list[dict]:
        found = where(self._answers.search(question, query_type="fts", fts_columns=ANSWER_TEXT_COLUMN), condition)
        return found.limit(depth).select(["doc_id", "answer", "question", self._index.column, "_score"]).to_arrow().to_pylist()

    def _vector(self, vector: np.ndarray, condition: str | None, depth: int) -> list[dict]:
        found = where(self._vector_query(vector), condition).limit(depth)
        return found.select(["doc_id", "answer", "question", self._index.column]).to_arrow().to_pylist()

    def _vector_query(self, vector: np.ndarray):
        query = vector_query(self._answers, vector, self._index)
        return query.bypass_vector_index() if self._exact else query


class PendingAnswer:
    """One answer in progress: the keyword half already running, the vector half to come."""

    def __init__(self, index: AnswerIndex, question: str, k: int, mode: str, condition: str | None, diversity: float | None):
        self._index, self._k, self._mode, self._condition, self._diversity = index, k, mode, condition, diversity
        self._depth = k * CHUNK_OVERFETCH * (2 if diversity is not None else 1)
        self._keyword: Future | None = None
        if mode in ("keyword", "hybrid"):
            self._keyword = _POOL.submit(index._keyword, question, condition, self._depth)

    def cancel(self) -> None:
        """The answer is not needed (a cache hit): drop the keyword search if it has not begun."""
        if self._keyword is not None:
            self._keyword.cancel()

    def finish(self, vector: np.ndarray | None) -> list[Hit]:
        """The ranked hits; `vector` is the question's embedding (unused in plain keyword mode)."""
        rows: dict[str, dict] = {}
        rankings: list[list[tuple[str, float]]] = []
        if self._mode in ("vector", "hybrid"):
            found = self._index._vector(vector, self._condition, self._depth)
            rankings.append(_best_per_doc(found, rows, lambda r: distance_to_similarity(r["_distance"])))
        if self._keyword is not None:
            rankings.append(_best_per_doc(self._keyword.result(), rows, lambda r: float(r["_score"])))
        if self._mode == "hybrid":
            ranked = rrf_fuse([[doc_id for doc_id, _ in ranking] for ranking in rankings])
        else:
            ranked = rankings[0]
        if self._diversity is not None and ranked:
            ranked = _diversify(vector, ranked[: self._depth], rows, self._index._index.column, self._k, self._diversity)
        return [
            Hit(id=doc_id, score=score, fields={"text": rows[doc_id]["answer"], "question": rows[doc_id]["question"]})
            for doc_id, score in ranked[: self._k]
        ]


def _best_per_doc(found: list[dict], rows: dict[str, dict], score) -> list[tuple[str, float]]:
    """(doc_id, score) best first, one per answer; remembers each answer's row for the response."""
    ranking: list[tuple[str, float]] = []
    seen: set[str] = set()
    for row in found:
        if row["doc_id"] not in seen:
            seen.add(row["doc_id"])
            rows.setdefault(row["doc_id"], row)
            ranking.append((row["doc_id"], score(row)))
    return ranking


def _diversify(
    query: np.ndarray, ranked: list[tuple[str, float]], rows: dict[str, dict], column: str, k: int, lambda_: float
) -> list[tuple[str, float]]:
    """MMR over the candidates, each answer standing by the vector of its best-matching chunk."""
    ids = [doc_id for doc_id, _ in ranked]
    matrix = np.asarray([rows[i][column] for i in ids], dtype=np.float32)
    scores = dict(ranked)
    return [(doc_id, scores[doc_id]) for doc_id, _ in mmr(query, ids, matrix, k, lambda_)]
