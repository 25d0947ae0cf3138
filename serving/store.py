"""Opens the Lance tables read-only and answers the searches the endpoints need.

Users are held in memory (vector and seen items, looked up per request); items and answers
are searched through Lance with the metric their IndexConfig names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from features.encoders import Encoder
from features.errors import NotFoundError, TableContractError
from features.factorization import explain_by_similarity, fold_in
from features.interactions import DEFAULT_EVENT, DEFAULT_EVENT_WEIGHTS
from features.filters import answer_condition, item_condition, sql_string
from features.retrieval import distance_to_similarity, mmr, rrf_fuse, take_unseen
from features.schemas import (
    ALS_INDEX,
    ANSWER_INDEX,
    ANSWER_TEXT_COLUMN,
    ANSWERS_TABLE,
    CONTENT_INDEX,
    ITEMS_TABLE,
    META_ALS,
    META_DIMENSION,
    PUBLISHED_TAG,
    META_ENCODER,
    USERS_TABLE,
    ALSConfig,
    IndexConfig,
)

# Chunks fetched per answer asked for: long answers have several chunks near the question.
CHUNK_OVERFETCH = 4


@dataclass(frozen=True)
class Hit:
    """One ranked result: an id, its score and the row's display fields."""

    id: str
    score: float
    fields: dict


class Store:
    """The served versions of `users`, `items` and `answers`."""

    def __init__(self, warehouse: str, encoder: Encoder) -> None:
        import lancedb

        self._encoder = encoder
        db = lancedb.connect(warehouse)
        tables = {}
        for name in (USERS_TABLE, ITEMS_TABLE, ANSWERS_TABLE):
            try:
                tables[name] = db.open_table(name)
            except (FileNotFoundError, ValueError) as error:
                raise TableContractError(f"warehouse '{warehouse}' has no complete set of tables: {error}") from error
            try:
                tables[name].checkout(PUBLISHED_TAG)  # a run's versions are served only once published
            except Exception as error:  # noqa: BLE001 - lance reports a missing tag in several ways
                raise TableContractError(f"table '{name}' has no '{PUBLISHED_TAG}' version: run `recqa publish`") from error
        self._items, self._answers = tables[ITEMS_TABLE], tables[ANSWERS_TABLE]
        users = tables[USERS_TABLE].to_arrow()
        for table in (self._items, self._answers):
            _check_encoder(table, encoder)
        _check_same_fit(tables[USERS_TABLE], self._items)
        self._user_index = {user_id: i for i, user_id in enumerate(users.column("user_id").to_pylist())}
        self._user_vectors = np.stack(users.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
        self._user_seen = users.column("seen_item_ids").to_pylist()
        items = self._items.to_arrow().select(["item_id", "title", "category", "popularity", ALS_INDEX.column])
        ids = items.column("item_id").to_pylist()
        self._titles = dict(zip(ids, items.column("title").to_pylist()))
        self._categories = dict(zip(ids, items.column("category").to_pylist()))
        order = np.argsort(-items.column("popularity").to_numpy(), kind="stable")
        popularity = items.column("popularity").to_pylist()
        self._popular = [(ids[i], float(popularity[i])) for i in order]
        self._item_ids = ids
        self._item_index = {item_id: i for i, item_id in enumerate(ids)}
        self._item_vectors = np.stack(items.column(ALS_INDEX.column).to_numpy(zero_copy_only=False)).astype(np.float32)
        self._als = ALSConfig(**json.loads((self._items.schema.metadata or {}).get(META_ALS, b"{}")))
        self.versions = {name: int(table.version) for name, table in tables.items()}

    def has_user(self, user_id: str) -> bool:
        return user_id in self._user_index

    def title(self, item_id: str) -> str | None:
        return self._titles.get(item_id)

    def has_item(self, item_id: str) -> bool:
        return item_id in self._item_index

    def seen(self, user_id: str) -> list[str]:
        """Items the user interacted with in training; empty for an unknown user."""
        idx = self._user_index.get(user_id)
        return list(self._user_seen[idx] or ()) if idx is not None else []

    def user_vector(self, user_id: str) -> np.ndarray:
        return self._user_vectors[self._user_index[user_id]]

    def fold_in(self, item_ids: list[str]) -> np.ndarray:
        """A user vector solved from items (one default-weight event each), as ALS would."""
        idx = np.array([self._item_index[i] for i in item_ids], dtype=np.int64)
        return fold_in(self._item_vectors, idx, np.full(len(idx), event_weight_default()), self._als)

    def reason(self, seen: list[str], item_id: str) -> str | None:
        """The seen item most like `item_id` by ALS factors."""
        idx = np.array([self._item_index[i] for i in seen if i in self._item_index], dtype=np.int64)
        best = explain_by_similarity(self._item_vectors, idx, self._item_index[item_id])
        return self._item_ids[best] if best is not None else None

    def recommend(
        self,
        vector: np.ndarray,
        k: int,
        seen: set[str] | frozenset[str] = frozenset(),
        categories: list[str] | None = None,
        exclude_ids: list[str] = (),
    ) -> list[tuple[str, float]]:
        """Top-k items by ALS score for a user vector among those the filters allow.

        The filter is applied before the search (prefilter), so a selective one still
        yields k items when k exist; seen items are over-fetched and dropped afterwards.
        """
        query = _vector_query(self._items, vector, ALS_INDEX)
        condition = item_condition(categories, exclude_ids)
        if condition:
            query = query.where(condition, prefilter=True)
        rows = query.limit(k + len(seen)).select(["item_id"]).to_arrow()
        candidates = zip(rows.column("item_id").to_pylist(), map(distance_to_similarity, rows.column("_distance").to_pylist()))
        return take_unseen(candidates, seen, k)

    def popular(self, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()) -> list[tuple[str, float]]:
        """The k most popular items (distinct users) the filters allow: the cold-start answer."""
        allowed = None if categories is None else set(categories)
        candidates = (pair for pair in self._popular if allowed is None or self._categories.get(pair[0]) in allowed)
        return take_unseen(candidates, set(exclude_ids), k)

    def is_cold(self, item_id: str) -> bool:
        """No behaviour learnt: nobody interacted with it, so its ALS vector says nothing."""
        return not np.any(self._item_vectors[self._item_index[item_id]])

    def similar_items(self, item_id: str, k: int, signal: str = "content") -> list[tuple[str, float]]:
        """Nearest items to one item, itself left out.

        `behaviour`: cosine of ALS factors (cosine, not dot, so popular items do not crowd
        every list); `content`: the content-embedding index.
        """
        if item_id not in self._item_index:
            raise NotFoundError(f"unknown item_id '{item_id}'")
        if signal == "behaviour":
            vectors = self._item_vectors
            norms = np.linalg.norm(vectors, axis=1) + 1e-12
            scores = (vectors @ vectors[self._item_index[item_id]]) / (norms * norms[self._item_index[item_id]])
            order = np.argsort(-scores)[: k + 1]
            return take_unseen(((self._item_ids[i], float(scores[i])) for i in order), {item_id}, k)
        row = self._items.search().where(f"item_id = {sql_string(item_id)}").select([CONTENT_INDEX.column]).limit(1).to_arrow()
        return self.search_items(np.asarray(row.column(CONTENT_INDEX.column)[0].as_py(), dtype=np.float32), k, exclude_ids=[item_id])

    def search_items(
        self, vector: np.ndarray, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()
    ) -> list[tuple[str, float]]:
        """Items nearest to a content-space vector (a question's or an item's), filters applied first."""
        query = _where(_vector_query(self._items, vector, CONTENT_INDEX), item_condition(categories, exclude_ids))
        rows = query.limit(k).select(["item_id"]).to_arrow()
        return list(zip(rows.column("item_id").to_pylist(), map(distance_to_similarity, rows.column("_distance").to_pylist())))

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]

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
            found = _where(_vector_query(self._answers, vector, ANSWER_INDEX), condition).limit(depth)
            found = found.select(["doc_id", "answer", "question"]).to_arrow().to_pylist()
            rankings.append(_best_per_doc(found, rows, lambda r: distance_to_similarity(r["_distance"])))
        if mode in ("keyword", "hybrid"):
            found = _where(self._answers.search(question, query_type="fts", fts_columns=ANSWER_TEXT_COLUMN), condition)
            found = found.limit(depth).select(["doc_id", "answer", "question", "_score"]).to_arrow().to_pylist()
            rankings.append(_best_per_doc(found, rows, lambda r: float(r["_score"])))
        if mode == "hybrid":
            ranked = rrf_fuse([[doc_id for doc_id, _ in ranking] for ranking in rankings])
        else:
            ranked = rankings[0]
        if diversity is not None and ranked:
            ranked = self._diversify(vector, ranked[: depth], k, diversity)
        return [
            Hit(id=doc_id, score=score, fields={"text": rows[doc_id]["answer"], "question": rows[doc_id]["question"]})
            for doc_id, score in ranked[:k]
        ]

    def _diversify(self, query: np.ndarray, ranked: list[tuple[str, float]], k: int, lambda_: float) -> list[tuple[str, float]]:
        ids = [doc_id for doc_id, _ in ranked]
        table = self._answers.search().where(f"doc_id IN ({', '.join(sql_string(i) for i in ids)})").select(["doc_id", ANSWER_INDEX.column])
        vectors = {}
        for row in table.limit(len(ids) * CHUNK_OVERFETCH).to_arrow().to_pylist():
            vectors.setdefault(row["doc_id"], row[ANSWER_INDEX.column])  # first chunk stands for the answer
        matrix = np.asarray([vectors[i] for i in ids], dtype=np.float32)
        scores = dict(ranked)
        return [(doc_id, scores[doc_id]) for doc_id, _ in mmr(query, ids, matrix, k, lambda_)]


def event_weight_default() -> float:
    """The weight of one event of the default kind: what a session item counts as."""
    return DEFAULT_EVENT_WEIGHTS[DEFAULT_EVENT]


def _where(query, condition: str | None):
    return query.where(condition, prefilter=True) if condition else query


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


def _vector_query(table, vector: np.ndarray, config: IndexConfig):
    """A vector query with the metric and search parameters of the config that built the index."""
    return (
        table.search(vector, vector_column_name=config.column)
        .distance_type(config.distance_type)
        .nprobes(config.nprobes)
        .refine_factor(config.refine_factor)
    )


def _check_same_fit(users, items) -> None:  # LanceTables at their served versions
    """Users and items must come from one ALS fit, or their dot products mean nothing."""
    user_als = (users.schema.metadata or {}).get(META_ALS)
    item_als = (items.schema.metadata or {}).get(META_ALS)
    if user_als != item_als:
        raise TableContractError(f"users and items come from different ALS fits ({user_als!r} vs {item_als!r})")


def _check_encoder(table, encoder: Encoder) -> None:
    metadata = table.schema.metadata or {}
    written_by = metadata.get(META_ENCODER, b"").decode()
    dimension = int(metadata.get(META_DIMENSION, b"0") or 0)
    if written_by != encoder.name or dimension != encoder.dimension:
        raise TableContractError(
            f"table '{table.name}' was embedded by '{written_by}' ({dimension} dims); "
            f"the service encodes with '{encoder.name}' ({encoder.dimension} dims): rebuild it or configure the same model"
        )
