"""Recommendations from one version of the `users` and `items` tables.

Users and the items' ALS vectors are held in memory: fold-in and reasons need the item
vectors anyway, so recommendations score all of them exactly with one matrix-vector product
(100,000 items x 32 factors is well under a millisecond, faster than any index search and
with nothing lost to approximation). Content vectors stay in Lance, searched through their
index. The service and the offline evaluation both rank through `for_user`, so what is
measured is what is served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from features.encoders import Encoder
from features.errors import NotFoundError, TableContractError
from features.factorization import explain_by_similarity, fold_in
from features.filters import item_condition, sql_string
from features.interactions import DEFAULT_EVENT, DEFAULT_EVENT_WEIGHTS
from features.retrieval import distance_to_similarity, take_unseen, top_k
from features.schemas import ALS_INDEX, CONTENT_INDEX, META_ALS, ALSConfig, fit_of
from serving.tables import check_encoder, vector_query, where


@dataclass(frozen=True)
class Recommendation:
    """A ranked list and how it was made: the strategy and the items that count as known."""

    strategy: str  # als | fold_in | popular
    items: list[tuple[str, float]]
    known: list[str]


class Recommender:
    """ALS recommendations, fold-in, popularity and item neighbours over users and items."""

    def __init__(self, users_table, items_table, encoder: Encoder) -> None:
        self._items = items_table
        self._encoder = encoder
        check_encoder(self._items, encoder)
        _check_same_fit(users_table, self._items)
        users = users_table.to_arrow()
        self._user_index = {user_id: i for i, user_id in enumerate(users.column("user_id").to_pylist())}
        self._user_vectors = np.stack(users.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
        self._user_seen = users.column("seen_item_ids").to_pylist()
        items = self._items.to_arrow().select(["item_id", "title", "category", "popularity", ALS_INDEX.column])
        ids = items.column("item_id").to_pylist()
        self._titles = dict(zip(ids, items.column("title").to_pylist()))
        self._category_code: dict[str | None, int] = {}  # category -> small int, for filter masks
        self._item_category = np.array(
            [self._category_code.setdefault(c, len(self._category_code)) for c in items.column("category").to_pylist()], dtype=np.int64
        )
        order = np.argsort(-items.column("popularity").to_numpy(), kind="stable")
        popularity = items.column("popularity").to_pylist()
        self._popular = [(ids[i], float(popularity[i])) for i in order]
        self._item_ids = ids
        self._item_index = {item_id: i for i, item_id in enumerate(ids)}
        self._item_vectors = np.stack(items.column(ALS_INDEX.column).to_numpy(zero_copy_only=False)).astype(np.float32)
        self._als = ALSConfig(**json.loads((self._items.schema.metadata or {}).get(META_ALS, b"{}")))

    def for_user(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool = True,
        recent_item_ids: list[str] = (),
        categories: list[str] | None = None,
        exclude_ids: list[str] = (),
    ) -> Recommendation:
        """The served recommendation strategy: fold-in from recent items, else the user's ALS
        vector, else popular items (a user nobody has seen)."""
        history = self.seen(user_id)
        recent = [item_id for item_id in recent_item_ids if self.has_item(item_id)]  # unknown ids carry no signal
        if recent:
            strategy, vector = "fold_in", self.fold_in(list(dict.fromkeys(history + recent)))
        elif self.has_user(user_id):
            strategy, vector = "als", self.user_vector(user_id)
        else:
            return Recommendation("popular", self.popular(k, categories, exclude_ids), [])
        known = history + recent
        items = self.recommend(vector, k, set(known) if exclude_seen else set(), categories, exclude_ids)
        return Recommendation(strategy, items, known)

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
        """Top-k items by ALS score (dot product) for a user vector among those the filters allow.

        Exact over the whole catalogue: filters and seen items are masks, so a selective
        filter still yields k items when k exist.
        """
        scores = self._item_vectors @ np.asarray(vector, dtype=np.float32)
        if categories is not None:
            scores[~self._in_categories(categories)] = -np.inf
        excluded = [self._item_index[i] for i in (*seen, *exclude_ids) if i in self._item_index]
        scores[excluded] = -np.inf
        return [(self._item_ids[i], float(scores[i])) for i in top_k(scores, k)]

    def popular(self, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()) -> list[tuple[str, float]]:
        """The k most popular items (distinct users) the filters allow: the cold-start answer."""
        allowed = None if categories is None else self._in_categories(categories)
        candidates = (pair for pair in self._popular if allowed is None or allowed[self._item_index[pair[0]]])
        return take_unseen(candidates, set(exclude_ids), k)

    def _in_categories(self, categories: list[str]) -> np.ndarray:
        """Per item, whether its category is one of `categories` (the category filter as a mask)."""
        return np.isin(self._item_category, [self._category_code[c] for c in categories if c in self._category_code])

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
        query = where(vector_query(self._items, vector, CONTENT_INDEX), item_condition(categories, exclude_ids))
        rows = query.limit(k).select(["item_id"]).to_arrow()
        return list(zip(rows.column("item_id").to_pylist(), map(distance_to_similarity, rows.column("_distance").to_pylist())))

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]


def event_weight_default() -> float:
    """The weight of one event of the default kind: what a session item counts as."""
    return DEFAULT_EVENT_WEIGHTS[DEFAULT_EVENT]


def _check_same_fit(users, items) -> None:  # LanceTables at their served versions
    """Users and items must come from one ALS fit, or their dot products mean nothing."""
    user_als, item_als = fit_of(users.schema.metadata), fit_of(items.schema.metadata)
    if user_als != item_als:
        raise TableContractError(f"users and items come from different ALS fits ({user_als!r} vs {item_als!r})")


