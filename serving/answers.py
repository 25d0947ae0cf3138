"""The answers table: keyword (BM25), vector and hybrid search, one result per answer."""

from __future__ import annotations

import numpy as np

from features.encoders import Encoder
from features.filters import answer_condition
from features.retrieval import distance_to_similarity, mmr, rrf_fuse
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN, IndexConfig
from serving.tables import Hit, check_encoder, vector_query, where

# Chunks fetched per answer asked for: long answers have several chunks near the question.
CHUNK_OVERFETCH = 4


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
        condition = answer_condition(sources, tags)
        depth = k * CHUNK_OVERFETCH * (2 if diversity is not None else 1)
        rows: dict[str, dict] = {}
        rankings: list[list[tuple[str, float]]] = []
        if vector is None and (mode != "keyword" or diversity is not None):
            vector = self._encoder.encode([question])[0]
        if mode in ("vector", "hybrid"):
            found = where(self._vector_query(vector), condition).limit(depth)
            found = found.select(["doc_id", "answer", "question", self._index.column]).to_arrow().to_pylist()
            rankings.append(_best_per_doc(found, rows, lambda r: distance_to_similarity(r["_distance"])))
        if mode in ("keyword", "hybrid"):
            found = where(self._answers.search(question, query_type="fts", fts_columns=ANSWER_TEXT_COLUMN), condition)
            found = found.limit(depth).select(["doc_id", "answer", "question", self._index.column, "_score"]).to_arrow().to_pylist()
            rankings.append(_best_per_doc(found, rows, lambda r: float(r["_score"])))
        if mode == "hybrid":
            ranked = rrf_fuse([[doc_id for doc_id, _ in ranking] for ranking in rankings])
        else:
            ranked = rankings[0]
        if diversity is not None and ranked:
            ranked = _diversify(vector, ranked[:depth], rows, self._index.column, k, diversity)
        return [
            Hit(id=doc_id, score=score, fields={"text": rows[doc_id]["answer"], "question": rows[doc_id]["question"]})
            for doc_id, score in ranked[:k]
        ]

    def _vector_query(self, vector: np.ndarray):
        query = vector_query(self._answers, vector, self._index)
        return query.bypass_vector_index() if self._exact else query


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
