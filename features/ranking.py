"""The served recommendation logic, on numpy arrays: ALS scores, fold-in, popularity, reasons.

Built either from one ALS fit in memory (evaluation and tuning: no tables, no Beam job, no
catalogue embedding) or from the rows of the `users` and `items` tables (the service, through
serving/recommender.py). Both paths go through `from_rows`, which takes exactly what a
build-recs run writes per user and per item, so what is measured is what is served.

Items' ALS vectors are scored exactly with one matrix-vector product: filters and seen items
are masks, so a selective filter still yields k items when k exist.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.errors import NotFoundError
from features.factorization import Factors, explain_by_similarity, fold_in, item_gram
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


# What a core is made of: `_init_changed` starts a changed core from these of its base.
_CORE_FIELDS = (
    "_user_index", "_user_vectors", "_user_seen", "_item_ids", "_item_index", "_item_vectors", "_titles",
    "_categories", "_counts", "_category_code", "_item_category", "_popular_order", "_gram", "_als",
)


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
        # per-item fields are lists and arrays aligned with `_item_ids`, so a core with a few items
        # changed is built with array operations over the catalogue (`with_changes`)
        self._item_ids = [item_ids[i] for i in order]
        self._item_index = {item_id: i for i, item_id in enumerate(self._item_ids)}
        self._item_vectors = _matrix(np.asarray(item_vectors)[order] if len(order) else item_vectors, len(order))
        self._counts = np.asarray([popularity[i] for i in order], dtype=np.int64)
        self._categories, self._titles = [categories[i] for i in order], [titles[i] for i in order]
        self._category_code: dict[str | None, int] = {}  # category -> small int, for filter masks
        self._item_category = np.array([self._category_code.setdefault(c, len(self._category_code)) for c in self._categories], dtype=np.int64)
        self._popular_order: np.ndarray | None = None  # `_popular_rows`
        self._gram: np.ndarray | None = None  # the items' YᵀY: `_items_gram`
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
        if recent:  # a seen item deleted from the catalogue since carries no signal either
            strategy, vector = "fold_in", self.fold_in([i for i in dict.fromkeys(history + recent) if self.has_item(i)])
        elif self.has_user(user_id):
            strategy, vector = "als", self.user_vector(user_id)
        else:
            return Recommendation("popular", self.popular(k, categories, exclude_ids), [])
        known = history + recent
        items = self.recommend(vector, k, set(known) if exclude_seen else set(), categories, exclude_ids)
        return Recommendation(strategy, items, known)

    def rows(self) -> dict[str, Any]:
        """The constructor's arguments as this core holds them (items in id order); made once,
        and read-only: the lists are the core's own."""
        if getattr(self, "_rows", None) is None:
            self._rows = self._make_rows()
        return self._rows

    def _make_rows(self) -> dict[str, Any]:
        users = sorted(self._user_index, key=self._user_index.__getitem__)
        positions = np.fromiter((self._user_index[u] for u in users), np.int64, len(users))
        return {
            "user_ids": users,
            "user_vectors": self._user_vectors[positions] if len(positions) else self._user_vectors,
            "user_seen": [self._user_seen[i] for i in positions],
            "item_ids": self._item_ids,
            "item_vectors": self._item_vectors,
            "popularity": self._counts.tolist(),
            "categories": self._categories,
            "titles": self._titles,
            "als": self._als,
        }

    def with_changes(
        self,
        dropped_items: Collection[str] = (),
        updated_items: Mapping[str, tuple[str | None, str | None]] | None = None,
        dropped_users: Collection[str] = (),
        added_users: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
    ) -> "RecommenderCore":
        """This core with items and users changed, as if built from its rows with them applied:
        the same ids in the same order, so the same lists, scores and ties.

        - `dropped_items`: gone from every list.
        - `updated_items`: item_id -> (title, category). One this core holds keeps its ALS
          vector and popularity; a new one is cold (zero vector, popularity 0), in id order.
        - `dropped_users` are unknown; `added_users`: user_id -> (vector, seen items), added or replacing.
        """
        core = RecommenderCore.__new__(RecommenderCore)
        core._init_changed(self, dropped_items, updated_items or {}, dropped_users, added_users or {})
        return core

    def _init_changed(
        self,
        base: "RecommenderCore",
        dropped_items: Collection[str],
        updated: Mapping[str, tuple[str | None, str | None]],
        dropped_users: Collection[str],
        added: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    ) -> None:
        """Initialise as `base` with the changes of `with_changes` applied (a subclass serving
        an overlay calls this in place of __init__). What they leave alone is shared with
        `base`, and nothing is rebuilt item by item in Python: the change log's follower makes
        one of these per step, at 100,000 items and 50,000 users."""
        for name in _CORE_FIELDS:
            setattr(self, name, getattr(base, name))
        self._rows = None
        self._change_items(dropped_items, updated)
        self._change_users(dropped_users, added)

    def _change_items(self, dropped_items: Collection[str], updated: Mapping[str, tuple[str | None, str | None]]) -> None:
        """Drop items and insert or retitle the updated ones, into new arrays and lists (the
        ones held now may be shared with the core this one started from, and are never written).

        The lists and arrays are spliced from slices of the old ones, so the Python work is per
        change, except the id -> position dict, which every position after the first change
        moves in. New items are cold (zero vectors, popularity 0), so the popular order gains
        them only among the items nobody interacted with, and is carried over.
        """
        index = self._item_index
        dropped = sorted({index[i] for i in dropped_items if i in index and i not in updated})
        new = sorted(i for i in updated if i not in index)
        if dropped or new:  # the catalogue's rows change: insert the new in id order, drop the dropped
            at = [bisect.bisect_left(self._item_ids, item_id) for item_id in new]  # before the base row at that position
            if self._popular_order is not None:
                rows = _spliced(np.arange(len(self._item_ids)), dropped, at, np.full(len(new), -1))  # new row -> old row (-1: new)
                moved = np.full(len(self._item_ids), -1, np.int64)  # old row -> new row (-1: dropped)
                moved[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
                self._popular_order = _popular_after(self._popular_order, self._counts, moved, np.flatnonzero(rows < 0))
            self._item_vectors, self._counts, self._item_category = (  # the new items' category codes are set below
                _spliced(array, dropped, at, np.zeros((len(new), *array.shape[1:]), array.dtype))
                for array in (self._item_vectors, self._counts, self._item_category)
            )
            self._item_ids = _spliced(self._item_ids, dropped, at, new)
            self._item_index = dict(zip(self._item_ids, range(len(self._item_ids))))
            self._titles = _spliced(self._titles, dropped, at, [None] * len(new))
            self._categories = _spliced(self._categories, dropped, at, [None] * len(new))
            self._gram = None  # YᵀY of the new rows, made on the first fold-in
        elif updated:  # titles and categories only: copies to write into
            self._titles, self._categories, self._item_category = list(self._titles), list(self._categories), self._item_category.copy()
        if updated:  # titles and categories of the upserted, new ones included
            self._category_code = dict(self._category_code)
            for item_id, (title, category) in updated.items():
                position = self._item_index[item_id]
                self._titles[position], self._categories[position] = title, category
                self._item_category[position] = self._category_code.setdefault(category, len(self._category_code))

    def _change_users(self, dropped_users: Collection[str], added: Mapping[str, tuple[np.ndarray, Sequence[str]]]) -> None:
        """Forget users and add or replace others; their rows stay where they are (the index
        decides who is known) and the added ones are appended to new arrays."""
        if not (dropped_users or added):
            return
        index = dict(self._user_index)
        for user_id in (*dropped_users, *added):
            index.pop(user_id, None)
        index.update((user_id, len(self._user_seen) + i) for i, user_id in enumerate(added))
        if added:
            rows = np.asarray([vector for vector, _ in added.values()], np.float32).reshape(len(added), -1)
            self._user_vectors = np.concatenate([self._user_vectors.reshape(-1, rows.shape[1]), rows])
            self._user_seen = self._user_seen + [list(seen) for _, seen in added.values()]
        self._user_index = index

    def warm(self) -> None:
        """Make now what the first fold-in and popular list would otherwise make on a request."""
        self._items_gram()
        self._popular_rows()

    def has_user(self, user_id: str) -> bool:
        return user_id in self._user_index

    @property
    def scoring_size(self) -> int:
        """Multiply-adds of one user's scores (items x factors): what a recommendation costs grows with it."""
        return int(self._item_vectors.size)

    def title(self, item_id: str) -> str | None:
        idx = self._item_index.get(item_id)
        return self._titles[idx] if idx is not None else None

    def has_item(self, item_id: str) -> bool:
        return item_id in self._item_index

    def category(self, item_id: str) -> str | None:
        idx = self._item_index.get(item_id)
        return self._categories[idx] if idx is not None else None

    def popularity(self, item_id: str) -> int:
        """Distinct users who interacted with the item (0 for a cold or unknown item)."""
        idx = self._item_index.get(item_id)
        return int(self._counts[idx]) if idx is not None else 0

    def seen(self, user_id: str) -> list[str]:
        """Items the user interacted with in training; empty for an unknown user."""
        idx = self._user_index.get(user_id)
        return list(self._user_seen[idx] or ()) if idx is not None else []

    def user_vector(self, user_id: str) -> np.ndarray:
        return self._user_vectors[self._user_index[user_id]]

    def fold_in(self, item_ids: list[str]) -> np.ndarray:
        """A user vector solved from items (one default-weight event each), as ALS would."""
        idx = np.array([self._item_index[i] for i in item_ids], dtype=np.int64)
        return fold_in(self._item_vectors, idx, np.full(len(idx), event_weight_default()), self._als, self._items_gram())

    def _items_gram(self) -> np.ndarray:
        """The items' YᵀY, made once per catalogue (at `warm`, else on its first fold-in)."""
        if self._gram is None:
            self._gram = item_gram(self._item_vectors)
        return self._gram

    def _popular_rows(self) -> np.ndarray:
        """Rows by count, most first, ties in row (id) order; made once per catalogue (at `warm`,
        else on the first `popular` call) unless a change carried it over (`_popular_after`)."""
        if self._popular_order is None:
            self._popular_order = np.argsort(-self._counts, kind="stable")
        return self._popular_order

    def reasons(self, seen: Sequence[str], item_ids: Sequence[str]) -> list[str | None]:
        """For each of `item_ids`, the seen item most like it by ALS factors (None when none of
        `seen` is in the catalogue)."""
        idx = np.array([self._item_index[i] for i in seen if i in self._item_index], dtype=np.int64)
        best = explain_by_similarity(self._item_vectors, idx, [self._item_index[i] for i in item_ids])
        return [self._item_ids[b] if b is not None else None for b in best]

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
        # Scored on 0..1 like the other lists a client renders: count / the largest count.
        top = float(max(int(self._counts.max()), 1)) if len(self._counts) else 1.0
        rows = self._popular_rows()
        order = rows if allowed is None else rows[allowed[rows]]
        candidates = ((self._item_ids[i], float(self._counts[i]) / top) for i in order)
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


def _spliced(column: Any, dropped: list[int], at: list[int], inserted: Any) -> Any:
    """`column` (a list, or an array by rows) without the rows at the sorted positions
    `dropped`, with inserted[j] placed before its row at[j] (`at` ascending): slices are copied
    whole, so the Python work is per change, not per row."""
    events = sorted([(p, 0, j) for j, p in enumerate(at)] + [(p, 1, -1) for p in dropped])  # at a row: inserts first
    pieces: list = []
    start = 0
    for position, drop, j in events:
        pieces.append(column[start:position])
        if drop:
            start = position + 1
        else:
            start = position
            pieces.append(inserted[j : j + 1])
    pieces.append(column[start:])
    if isinstance(column, np.ndarray):
        return np.concatenate(pieces)  # a new array, even of one piece
    out: list = []
    for piece in pieces:
        out.extend(piece)
    return out


def _popular_after(order: np.ndarray, counts: np.ndarray, moved: np.ndarray, added: np.ndarray) -> np.ndarray:
    """The popular order after a change, from the one before over `counts` (by count, most
    first, ties in row order). `moved`: old row -> new row (-1 dropped); `added`: the new rows,
    all of count 0, so they join the block of count-0 rows, which is in row order."""
    ordered = counts[order]
    start, end = int(np.count_nonzero(ordered > 0)), int(np.count_nonzero(ordered >= 0))  # the count-0 block
    kept = [moved[order[a:b]] for a, b in ((0, start), (start, end), (end, len(order)))]
    above, zero, below = (rows[rows >= 0] for rows in kept)
    return np.concatenate([above, np.sort(np.concatenate([zero, added])), below])
