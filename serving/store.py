"""Opens the Lance tables read-only and answers the searches the endpoints need.

Users are held in memory (vector and seen items, looked up per request); items and answers
are searched through Lance with the metric their IndexConfig names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.encoders import Encoder
from features.errors import NotFoundError, TableContractError
from features.retrieval import cosine_distance_to_score, dot_distance_to_score, take_unseen
from features.schemas import (
    ALS_INDEX,
    ANSWER_INDEX,
    ANSWERS_TABLE,
    CONTENT_INDEX,
    ITEMS_TABLE,
    META_ALS,
    META_DIMENSION,
    PUBLISHED_TAG,
    META_ENCODER,
    USERS_TABLE,
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
        items = self._items.to_arrow().select(["item_id", "title", "popularity"])
        self._titles = dict(zip(items.column("item_id").to_pylist(), items.column("title").to_pylist()))
        order = np.argsort(-items.column("popularity").to_numpy(), kind="stable")
        ids = items.column("item_id").to_pylist()
        popularity = items.column("popularity").to_pylist()
        self._popular = [(ids[i], float(popularity[i])) for i in order]
        self.versions = {name: int(table.version) for name, table in tables.items()}

    def has_user(self, user_id: str) -> bool:
        return user_id in self._user_index

    def title(self, item_id: str) -> str | None:
        return self._titles.get(item_id)

    def recommend(self, user_id: str, k: int) -> list[tuple[str, float]]:
        """Top-k items by ALS score, excluding what the user has already seen."""
        idx = self._user_index[user_id]
        seen = set(self._user_seen[idx] or ())
        rows = (
            _vector_query(self._items, self._user_vectors[idx], ALS_INDEX)
            .limit(k + len(seen))
            .select(["item_id"])
            .to_arrow()
        )
        candidates = zip(rows.column("item_id").to_pylist(), map(dot_distance_to_score, rows.column("_distance").to_pylist()))
        return take_unseen(candidates, seen, k)

    def popular(self, k: int, exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, float]]:
        """The k most popular items (distinct users), the cold-start answer."""
        return take_unseen(self._popular, exclude, k)

    def similar_items(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """Nearest items by content embedding, the item itself left out."""
        if item_id not in self._titles:
            raise NotFoundError(f"unknown item_id '{item_id}'")
        query = _escape(item_id)
        row = self._items.search().where(f"item_id = '{query}'").select([CONTENT_INDEX.column]).limit(1).to_arrow()
        vector = np.asarray(row.column(CONTENT_INDEX.column)[0].as_py(), dtype=np.float32)
        rows = (
            _vector_query(self._items, vector, CONTENT_INDEX)
            .limit(k + 1)
            .select(["item_id"])
            .to_arrow()
        )
        candidates = zip(rows.column("item_id").to_pylist(), map(cosine_distance_to_score, rows.column("_distance").to_pylist()))
        return take_unseen(candidates, {item_id}, k)

    def answer(self, question: str, k: int) -> list[Hit]:
        """The k answers nearest to the question's embedding; an answer counts once, by its best chunk."""
        vector = self._encoder.encode([question])[0]
        rows = (
            _vector_query(self._answers, vector, ANSWER_INDEX)
            .limit(k * CHUNK_OVERFETCH)
            .select(["doc_id", "answer", "question"])
            .to_arrow()
            .to_pylist()
        )
        by_id = {}
        for r in rows:
            by_id.setdefault(r["doc_id"], r)
        best = take_unseen(((r["doc_id"], cosine_distance_to_score(r["_distance"])) for r in rows), set(), k)
        return [Hit(id=i, score=s, fields={"text": by_id[i]["answer"], "question": by_id[i]["question"]}) for i, s in best]


def _vector_query(table, vector: np.ndarray, config: IndexConfig):
    """A vector query with the metric and search parameters of the config that built the index."""
    return (
        table.search(vector, vector_column_name=config.column)
        .distance_type(config.distance_type)
        .nprobes(config.nprobes)
        .refine_factor(config.refine_factor)
    )


def _escape(value: str) -> str:
    """A string literal body for a Lance SQL condition: quotes doubled, so a value stays a value."""
    return value.replace("'", "''")


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
