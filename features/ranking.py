"""The served recommendation logic, on numpy arrays: ALS scores, fold-in, popularity, reasons.

Built either from one ALS fit in memory (evaluation and tuning: no tables, no Beam job, no
catalogue embedding) or from the rows of the `users` and `items` tables (the service, through
serving/recommender.py). Both paths go through `from_rows`, which takes exactly what a
build-recs run writes per user and per item, so what is measured is what is served.

Items' ALS vectors are scored exactly with one matrix-vector product: filters and seen items
are masks, so a selective filter still yields k items when k exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.errors import NotFoundError
from features.factorization import Factors, explain_by_similarity, fold_in
from features.interactions import DEFAULT_EVENT, DEFAULT_EVENT_WEIGHTS, InteractionMatrix
from features.retrieval import take_unseen, top_k
from features.schemas import ALSConfig


@dataclass(frozen=True)
class Recommendation:
    """A ranked list and how it was made: the strategy and the items that count as known."""

    strategy: str  # als | fold_in | popular
    items: list[tuple[str, float]]
    known: list[str]


def event_weight_default() -> float:
    """The weight of one event of the default kind: what a session item counts as."""
    return DEFAULT_EVENT_WEIGHTS[DEFAULT_EVENT]


def _matrix(vectors: np.ndarray, rows: int) -> np.ndarray:
    """Vectors as a (rows, dim) float32 matrix; no rows gives a (0, 0) one."""
    array = np.asarray(vectors, dtype=np.float32)
    return array.reshape(rows, -1) if rows else np.zeros((0, 0), dtype=np.float32)


class RecommenderCore:
    """ALS recommendations, fold-in, popularity and behaviour neighbours from arrays."""

    def __init__(
        self,
        user_ids: Sequence[str],
        user_vectors: np.ndarray,
        user_seen: Sequence[Sequence[str] | None],
        item_ids: Sequence[str],
        item_vectors: np.ndarray,
        popularity: Sequence[int],
        categories: Sequence[str | None],
        titles: Sequence[str | None],
        als: ALSConfig,
    ) -> None:
        self._user_index = {user_id: i for i, user_id in enumerate(user_ids)}
        self._user_vectors = _matrix(user_vectors, len(user_ids))
        self._user_seen = list(user_seen)
        # items in id order, whatever order the rows came in: equal scores (cold items, equal
        # popularity) then rank the same from a table as from a fit
        order = sorted(range(len(item_ids)), key=lambda i: item_ids[i])
        item_ids, item_vectors = [item_ids[i] for i in order], np.asarray(item_vectors)[order] if len(order) else item_vectors
        popularity, categories, titles = ([seq[i] for i in order] for seq in (popularity, categories, titles))
        self._item_ids = list(item_ids)
        self._item_index = {item_id: i for i, item_id in enumerate(self._item_ids)}
        self._item_vectors = _matrix(item_vectors, len(self._item_ids))
        self._titles = dict(zip(self._item_ids, titles))
        self._category_code: dict[str | None, int] = {}  # category -> small int, for filter masks
        self._item_category = np.array([self._category_code.setdefault(c, len(self._category_code)) for c in categories], dtype=np.int64)
        self._categories = dict(zip(self._item_ids, categories))
        counts = np.asarray(popularity, dtype=np.int64)
        self._popularity = dict(zip(self._item_ids, counts.tolist()))
        # Scored on 0..1 like the other lists a client renders: count / the largest count.
        top = float(max(int(counts.max()), 1)) if len(counts) else 1.0
        self._popular = [(self._item_ids[i], float(counts[i]) / top) for i in np.argsort(-counts, kind="stable")]
        self._als = als

    @classmethod
    def from_fit(
        cls, matrix: InteractionMatrix, factors: Factors, als: ALSConfig, categories: dict[str, str | None] | None = None
    ) -> "RecommenderCore":
        """The recommender a build-recs run of this fit would serve: its users' and items' rows."""
        categories = categories or {}
        return cls(
            user_ids=matrix.user_ids,
            user_vectors=factors.user_factors,
            user_seen=[matrix.seen_item_ids(u) for u in range(len(matrix.user_ids))],
            item_ids=matrix.item_ids,
            item_vectors=factors.item_factors,
            popularity=matrix.item_popularity(),
            categories=[categories.get(i) for i in matrix.item_ids],
            titles=list(matrix.item_ids),
            als=als,
        )

    def for_user(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool = True,
        recent_item_ids: Sequence[str] = (),
        categories: list[str] | None = None,
        exclude_ids: Sequence[str] = (),
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

    def rows(self) -> dict[str, Any]:
        """The constructor's arguments as this core holds them (items in id order): what a core
        with changes applied over it is built from (serving/recommender.py). Made once: the
        core never changes, and every step of the change log's overlay starts from it."""
        if getattr(self, "_rows", None) is None:
            self._rows = self._make_rows()
        return self._rows

    def _make_rows(self) -> dict[str, Any]:
        return {
            "user_ids": sorted(self._user_index, key=self._user_index.__getitem__),
            "user_vectors": self._user_vectors,
            "user_seen": self._user_seen,
            "item_ids": self._item_ids,
            "item_vectors": self._item_vectors,
            "popularity": [self._popularity[i] for i in self._item_ids],
            "categories": [self._categories[i] for i in self._item_ids],
            "titles": [self._titles[i] for i in self._item_ids],
            "als": self._als,
        }

    def has_user(self, user_id: str) -> bool:
        return user_id in self._user_index

    def title(self, item_id: str) -> str | None:
        return self._titles.get(item_id)

    def has_item(self, item_id: str) -> bool:
        return item_id in self._item_index

    def category(self, item_id: str) -> str | None:
        return self._categories.get(item_id)

    def popularity(self, item_id: str) -> int:
        """Distinct users who interacted with the item (0 for a cold or unknown item)."""
        return int(self._popularity.get(item_id, 0))

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
        exclude_ids: Sequence[str] = (),
    ) -> list[tuple[str, float]]:
        """Top-k items by ALS score (dot product) for a user vector among those the filters allow."""
        scores = self._item_vectors @ np.asarray(vector, dtype=np.float32)
        if categories is not None:
            scores[~self._in_categories(categories)] = -np.inf
        excluded = [self._item_index[i] for i in (*seen, *exclude_ids) if i in self._item_index]
        scores[excluded] = -np.inf
        return [(self._item_ids[i], float(scores[i])) for i in top_k(scores, k)]

    def popular(self, k: int, categories: list[str] | None = None, exclude_ids: Sequence[str] = ()) -> list[tuple[str, float]]:
        """The k most popular items the filters allow, scored count / largest count: the cold-start answer."""
        allowed = None if categories is None else self._in_categories(categories)
        candidates = (pair for pair in self._popular if allowed is None or allowed[self._item_index[pair[0]]])
        return take_unseen(candidates, set(exclude_ids), k)

    def _in_categories(self, categories: list[str]) -> np.ndarray:
        """Per item, whether its category is one of `categories` (the category filter as a mask)."""
        return np.isin(self._item_category, [self._category_code[c] for c in categories if c in self._category_code])

    def is_cold(self, item_id: str) -> bool:
        """No behaviour learnt: nobody interacted with it, so its ALS vector says nothing."""
        return not np.any(self._item_vectors[self._item_index[item_id]])

    def similar_by_behaviour(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """Nearest items by cosine of ALS factors (not dot, so popular items do not crowd every list)."""
        if item_id not in self._item_index:
            raise NotFoundError(f"unknown item_id '{item_id}'")
        vectors = self._item_vectors
        norms = np.linalg.norm(vectors, axis=1) + 1e-12
        scores = (vectors @ vectors[self._item_index[item_id]]) / (norms * norms[self._item_index[item_id]])
        order = np.argsort(-scores)[: k + 1]
        return take_unseen(((self._item_ids[i], float(scores[i])) for i in order), {item_id}, k)
