"""Recommendations from one version of the `users` and `items` tables.

The ranking itself is features/ranking.py's `RecommenderCore`, built here from the tables'
rows; evaluation builds the same core from a fit in memory, so what is measured is what is
served. Users and the items' ALS vectors are held in memory: fold-in and reasons need the item
vectors anyway, and one matrix-vector product over all of them is exact. Content vectors stay
in Lance, searched through their index.
"""

from __future__ import annotations

import json

import numpy as np

from features.encoders import Encoder
from features.errors import NotFoundError, TableContractError
from features.filters import item_condition, sql_string
from features.ranking import Recommendation, RecommenderCore, event_weight_default
from features.retrieval import distance_to_similarity
from features.schemas import ALS_INDEX, CONTENT_INDEX, META_ALS, ALSConfig, fit_of
from serving.tables import check_encoder, vector_query, where

__all__ = ["Recommendation", "Recommender", "event_weight_default"]


class Recommender(RecommenderCore):
    """The served recommender: the core over the tables' rows, plus content search in Lance."""

    def __init__(self, users_table, items_table, encoder: Encoder) -> None:
        self._items = items_table
        self._encoder = encoder
        check_encoder(self._items, encoder)
        _check_same_fit(users_table, self._items)
        users = users_table.to_arrow()
        items = self._items.to_arrow().select(["item_id", "title", "category", "popularity", ALS_INDEX.column])
        super().__init__(
            user_ids=users.column("user_id").to_pylist(),
            user_vectors=_stack(users.column("vector")),
            user_seen=users.column("seen_item_ids").to_pylist(),
            item_ids=items.column("item_id").to_pylist(),
            item_vectors=_stack(items.column(ALS_INDEX.column)),
            popularity=items.column("popularity").to_pylist(),
            categories=items.column("category").to_pylist(),
            titles=items.column("title").to_pylist(),
            als=ALSConfig(**json.loads((self._items.schema.metadata or {}).get(META_ALS, b"{}"))),
        )

    def similar_items(self, item_id: str, k: int, signal: str = "content") -> list[tuple[str, float]]:
        """Nearest items to one item, itself left out.

        `behaviour`: cosine of ALS factors; `content`: the content-embedding index.
        """
        if item_id not in self._item_index:
            raise NotFoundError(f"unknown item_id '{item_id}'")
        if signal == "behaviour":
            return self.similar_by_behaviour(item_id, k)
        row = self._items.search().where(f"item_id = {sql_string(item_id)}").select([CONTENT_INDEX.column]).limit(1).to_arrow()
        return self.search_items(np.asarray(row.column(CONTENT_INDEX.column)[0].as_py(), dtype=np.float32), k, exclude_ids=[item_id])

    def search_items(
        self, vector: np.ndarray, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()
    ) -> list[tuple[str, float]]:
        """Items nearest to a content-space vector (a question's or an item's), filters applied first."""
        query = where(vector_query(self._items, vector, CONTENT_INDEX), item_condition(categories, exclude_ids))
        rows = query.limit(k).select(["item_id"]).to_arrow()
        return list(zip(rows.column("item_id").to_pylist(), map(distance_to_similarity, rows.column("_distance").to_pylist())))

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]


def _stack(column) -> np.ndarray:
    """A fixed-size-list column as a (rows, dim) float32 matrix (an empty table gives (0, 0))."""
    values = column.to_numpy(zero_copy_only=False)
    return np.stack(values).astype(np.float32) if len(values) else np.zeros((0, 0), dtype=np.float32)


def _check_same_fit(users, items) -> None:  # LanceTables at their served versions
    """Users and items must come from one ALS fit, or their dot products mean nothing."""
    user_als, item_als = fit_of(users.schema.metadata), fit_of(items.schema.metadata)
    if user_als != item_als:
        raise TableContractError(f"users and items come from different ALS fits ({user_als!r} vs {item_als!r})")


