"""The answers table: keyword (BM25), vector and hybrid search, one result per answer."""

from __future__ import annotations

import copy
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from lance.query import MatchQuery

from features.bm25 import DEFAULT_ANALYZER, Analyzer
from features.encoders import Encoder
from features.filters import answer_condition, sql_string
from features.retrieval import bm25_weight_of, distance_to_similarity, mmr, rrf_fuse, score_fuse
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN, IndexConfig
from serving.fresh_answers import FreshAnswers
from serving.keywords import load_keywords
from serving.memory import DEFAULT_MEMORY_BUDGET_MB, AnswerMemory
from serving.tables import Hit, check_encoder, vector_search
from serving.vectors import VectorSearch, has_vector_index

logger = logging.getLogger(__name__)

# Chunks fetched per answer asked for: long answers have several chunks near the question.
CHUNK_OVERFETCH = 4
# Keyword searches run here, overlapping the question's encoding; Lance does the work in Rust
# with the GIL released, so a thread per concurrent request is cheap.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="recqa-keyword")
# A hit's fields and the column each comes from (of the answer's best chunk).
HIT_FIELDS = {"text": "answer", "question": "question", "source": "source", "tags": "tags", "chunk_id": "chunk_id"}
# How much deeper a search goes again when the written-since-build changes filtered out too many of its rows.
DEEPEN_FACTOR = 4


class AnswerIndex:
    """Searches one version of the answers table; `index` sets the vector search parameters.

    `fusion` is how hybrid combines its two lists: "score" (cosine + bm25_weight * BM25, the
    served default) or "rrf" (reciprocal rank fusion, kept as the evaluation's reference).

    Within `memory_budget_mb` the version's vectors and response fields are held in memory
    (serving/memory.py): Lance's indexes give row ids, the re-ranking and fields come from
    memory, and a table without a vector index is searched exactly in memory. Above the
    budget every search goes through Lance.
    """

    def __init__(
        self,
        table,
        encoder: Encoder,
        index: IndexConfig = ANSWER_INDEX,
        exact: bool = False,
        fusion: str = "score",
        bm25_weight: float | None = None,  # None: the weight the table was built with (build-qa --bm25-weight)
        memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
    ) -> None:
        check_encoder(table, encoder)
        if fusion not in ("score", "rrf"):
            raise ValueError(f"fusion must be 'score' or 'rrf', not {fusion!r}")
        # The pylance dataset at the table's version: its scanner costs less per query than the
        # lancedb query builder (FTS 11 vs 19 ms, vector 15 vs 19 ms on 100,000 rows, busy machine).
        self._dataset = table.to_lance()
        self._encoder = encoder
        self._index = index.searched(self._dataset.count_rows())  # nprobes from the indexed rows unless set
        self._exact = exact  # brute force over every row: the reference ANN recall is measured against
        self._fusion = fusion
        self._bm25_weight = bm25_weight if bm25_weight is not None else bm25_weight_of(table.schema.metadata)
        self._fresh: FreshAnswers | None = None
        self.metadata = dict(table.schema.metadata or {})
        self._indexed = has_vector_index(self._dataset, self._index.column)
        self._memory, self._plan = AnswerMemory.load(self._dataset, index.column, memory_budget_mb << 20)
        log = logger.info if self._memory is not None else logger.warning  # over the budget: slower, and worth seeing
        log("answers table version %s: searched through %s (%s)", self._dataset.version, self._plan.path, self._plan.reason)
        self._bm25, self._keyword_reason = None, "the table is searched through Lance"
        if self._memory is not None:
            self._bm25, self._keyword_reason = load_keywords(self._dataset, self._memory, ANSWER_TEXT_COLUMN, memory_budget_mb << 20)
        # concurrent questions' vector searches, one batch
        self._vectors = VectorSearch(self._dataset, self._index, self._memory, exact or not self._indexed) if self._memory is not None else None

    @property
    def index_config(self) -> IndexConfig:
        """How this version's vector index is searched (nprobes resolved for its rows)."""
        return self._index

    def search_info(self) -> dict:
        """Which path searches this version (memory or Lance), its size and the budget."""
        if self._memory is None:
            vector = "Lance, exact" if self._exact or not self._indexed else "Lance IVF-PQ, refined from disk"
        else:
            vector = "exact in memory" if self._exact or not self._indexed else "Lance IVF-PQ row ids, re-ranked in memory"
        keyword = "in memory" if self._bm25 is not None else "Lance full-text index"
        return {**self._plan.info(), "vector_search": vector, "keyword_search": keyword, "keyword_reason": self._keyword_reason}

    def with_fresh(self, fresh: FreshAnswers | None) -> "AnswerIndex":
        """The same table version searched together with the answers written since its build."""
        other = copy.copy(self)
        other._fresh = fresh
        return other

    def rows(self) -> int:
        """Chunks in the table's version (the corpus size fresh BM25 scores are put on)."""
        return int(self._dataset.count_rows())

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

        `hybrid` fuses the vector and keyword rankings (see the class); `diversity` re-ranks
        the candidates by maximal marginal relevance.
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
        return PendingAnswer(self, question, k, mode, (sources, tags), diversity)

    def document(self, doc_id: str) -> dict | None:
        """One answer document (question, whole answer, source, tags, chunk count), or None if unknown."""
        if self._fresh is not None and doc_id in self._fresh.touched:
            return self._fresh.documents.get(doc_id)
        rows = self._dataset.to_table(
            columns=["doc_id", "chunk_id", "question", "answer", "source", "tags"], filter=f"doc_id = {sql_string(doc_id)}"
        ).to_pylist()
        if not rows:
            return None
        first = min(rows, key=lambda row: row["chunk_id"])
        return {
            "doc_id": doc_id,
            "question": first["question"],
            "text": first["answer"],
            "source": first["source"],
            "tags": list(first["tags"] or []),
            "chunks": len(rows),
        }

    @property
    def vector_column(self) -> str:
        return self._index.column

    def ranked_rows(
        self, query: str | np.ndarray, filters: tuple[list[str] | None, list[str] | None], depth: int, with_vectors: bool
    ) -> list[dict]:
        """The chunks best for `query` under the (sources, tags) filters, best first: by BM25 for a
        question (`_score`), by the index's metric for a vector (`_distance`).

        The table's rows come without the answers replaced or deleted since its build, searched
        deeper while those filtered out so many that fewer answers than `depth` asks for remain;
        the chunks written since (the fresh answers) slot in by the same score.
        """
        keyword, asked = isinstance(query, str), depth
        condition = answer_condition(*filters)
        search = self._keyword if keyword else self._vector
        found = search(query, filters, condition, depth, with_vectors)
        fresh = self._fresh
        if fresh is None:
            return found
        if fresh.touched:
            wanted = depth // CHUNK_OVERFETCH
            while True:
                kept = [row for row in found if row["doc_id"] not in fresh.touched]
                if len(found) < depth or len({row["doc_id"] for row in kept}) >= wanted:
                    break
                depth *= DEEPEN_FACTOR
                found = search(query, filters, condition, depth, with_vectors)
            found = kept
        if keyword:
            return sorted(found + fresh.keyword_rows(query, *filters, asked), key=lambda r: -float(r["_score"]))
        return sorted(found + fresh.vector_rows(query, *filters, asked), key=lambda r: r["_distance"])  # one metric: fresh chunks slot in

    def fuse(self, vector: list[tuple[str, float]], keyword: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """The hybrid ranking of the two per-answer rankings, by the index's `fusion`."""
        if self._fusion == "rrf":
            return rrf_fuse([[doc_id for doc_id, _ in vector], [doc_id for doc_id, _ in keyword]])
        return score_fuse(vector, keyword, self._bm25_weight)

    def _columns(self, with_vectors: bool) -> list[str]:
        return ["doc_id", "chunk_id", "answer", "question", "source", "tags", *([self._index.column] if with_vectors else [])]

    @property
    def analyzer(self) -> Analyzer:
        """The keyword search's text analysis: the index's own where memory reproduces it, else
        LanceDB's default (what fresh answers are tokenized by, to share the table's terms)."""
        return self._bm25.analyzer if self._bm25 is not None else DEFAULT_ANALYZER

    @property
    def keyword_in_memory(self) -> bool:
        """Whether keyword searches run on postings in memory (serving/keywords.py), not Lance."""
        return self._bm25 is not None

    def _keyword(self, question: str, filters: tuple, condition: str | None, depth: int, with_vectors: bool) -> list[dict]:
        memory = self._memory
        if self._bm25 is not None:
            positions, scores = self._bm25.top(question, depth, memory.mask(*filters))
            rows = memory.take(positions, with_vectors, self._index.column)
            for row, score in zip(rows, scores.tolist()):
                row["_score"] = score
            return rows
        query = MatchQuery(question, ANSWER_TEXT_COLUMN)
        if memory is None:
            found = self._dataset.to_table(columns=self._columns(with_vectors), full_text_query=query, filter=condition, prefilter=True, limit=depth)
            return found.to_pylist()
        found = self._dataset.to_table(
            columns=["_score"], with_row_id=True, disable_scoring_autoprojection=True, full_text_query=query, filter=condition, prefilter=True, limit=depth
        )
        rows = memory.take(memory.positions(found.column("_rowid").to_numpy()), with_vectors, self._index.column)
        for row, score in zip(rows, found.column("_score").to_pylist()):
            row["_score"] = score
        return rows

    def _vector(self, vector: np.ndarray, filters: tuple, condition: str | None, depth: int, with_vectors: bool) -> list[dict]:
        memory = self._memory
        if memory is None:
            search = vector_search(self._dataset, self._index, vector, depth, self._columns(with_vectors), condition, self._exact)
            return search.to_table().to_pylist()
        positions, distances = self._vectors.search(vector, depth, lambda: memory.mask(*filters), condition)
        rows = memory.take(positions, with_vectors, self._index.column)
        for row, distance in zip(rows, distances.tolist()):
            row["_distance"] = distance
        return rows


class PendingAnswer:
    """One answer in progress: the keyword half already running on a thread (through Lance) or
    left to `finish` (in memory, cheaper than the hand-off), the vector half to come."""

    def __init__(
        self, owner: AnswerIndex, question: str, k: int, mode: str, filters: tuple[list[str] | None, list[str] | None], diversity: float | None
    ):
        self._owner, self._question, self._k, self._mode, self._diversity = owner, question, k, mode, diversity
        self._filters = filters
        self._depth = k * CHUNK_OVERFETCH * (2 if diversity is not None else 1)
        self._keyword: Future | None = None
        if mode in ("keyword", "hybrid") and not owner.keyword_in_memory:
            self._keyword = _POOL.submit(owner.ranked_rows, question, filters, self._depth, diversity is not None)

    def cancel(self) -> None:
        """The answer is not needed (a cache hit): drop the keyword search if it has not begun."""
        if self._keyword is not None:
            self._keyword.cancel()

    def finish(self, vector: np.ndarray | None) -> list[Hit]:
        """The ranked hits; `vector` is the question's embedding (unused in plain keyword mode)."""
        rows: dict[str, dict] = {}
        rankings: list[list[tuple[str, float]]] = []
        if self._mode in ("vector", "hybrid"):
            found = self._owner.ranked_rows(vector, self._filters, self._depth, self._diversity is not None)
            rankings.append(_best_per_doc(found, rows, lambda r: distance_to_similarity(r["_distance"])))
        if self._mode in ("keyword", "hybrid"):
            found = self._keyword.result() if self._keyword is not None else self._owner.ranked_rows(
                self._question, self._filters, self._depth, self._diversity is not None
            )
            rankings.append(_best_per_doc(found, rows, lambda r: float(r["_score"])))
        ranked = self._owner.fuse(*rankings) if self._mode == "hybrid" else rankings[0]
        if self._diversity is not None and ranked:
            ranked = _diversify(vector, ranked[: self._depth], rows, self._owner.vector_column, self._k, self._diversity)
        return [
            Hit(id=doc_id, score=score, fields={field: rows[doc_id][column] for field, column in HIT_FIELDS.items()})
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
