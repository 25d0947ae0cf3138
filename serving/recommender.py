"""Recommendations from one version of the `users` and `items` tables.

The ranking itself is features/ranking.py's `RecommenderCore`, built here from the tables'
rows; evaluation builds the same core from a fit in memory, so what is measured is what is
served. Users and the items' ALS vectors are held in memory: fold-in and reasons need the item
vectors anyway, and one matrix-vector product over all of them is exact. The content vectors
are held too while they fit `RECQA_MEMORY_BUDGET_MB` (serving/vectors.py: Lance's index gives
candidate row ids, re-ranked exactly here, concurrent searches batched; a table without the
index is searched exactly here); past the budget they are searched through Lance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping

import numpy as np

from features.changes import ITEMS, ChangeSet
from features.encoders import Encoder
from features.errors import NotFoundError, TableContractError
from features.filters import item_condition, sql_string
from features.ranking import Recommendation, RecommenderCore, event_weight_default
from features.retrieval import distance_to_similarity
from features.schemas import ALS_INDEX, CONTENT_INDEX, META_ALS, ALSConfig, fit_of
from serving.memory import DEFAULT_MEMORY_BUDGET_MB, MemoryPlan, megabytes
from serving.tables import check_encoder, vector_search
from serving.vectors import VectorMemory, VectorSearch, has_vector_index

__all__ = ["FreshRecommender", "Recommendation", "Recommender", "event_weight_default"]
# Rows read per batch while loading the content vectors into memory.
CONTENT_BATCH_ROWS = 8192
# How much deeper a content search goes again when changed items filtered out too many of its rows.
DEEPEN_FACTOR = 4


class Recommender(RecommenderCore):
    """The served recommender: the core over the tables' rows, plus content search (from memory, or through Lance past the budget)."""

    def __init__(self, users_table, items_table, encoder: Encoder, memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB) -> None:
        self._items = items_table
        self._dataset = items_table.to_lance()  # the pylance dataset at the table's version, for `vector_search`
        self._encoder = encoder
        check_encoder(self._items, encoder)
        _check_same_fit(users_table, self._items)
        users = users_table.to_arrow()
        items = self._dataset.to_table(columns=["item_id", "title", "category", "popularity", ALS_INDEX.column])
        self.content_index = CONTENT_INDEX.searched(items.num_rows)  # how its content index is searched
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
        self.warm()  # at load, not on the first request; overlays over an unchanged catalogue share it
        rows, column = items.num_rows, CONTENT_INDEX.column
        content_bytes = rows * self._dataset.schema.field(column).type.list_size * 4
        held = content_bytes <= memory_budget_mb << 20
        self._content_indexed = has_vector_index(self._dataset, column)
        self._content: VectorSearch | None = None
        if held:
            self._content = VectorSearch(self._dataset, self.content_index, self._content_memory(column), exact=not self._content_indexed)
        reason = f"{rows:,} content vectors {'fit in' if held else 'need'} {megabytes(content_bytes)}"
        self.content_plan = MemoryPlan("memory" if held else "lance", rows, content_bytes, memory_budget_mb << 20, reason)

    def _content_memory(self, column: str) -> VectorMemory:
        """The table's content vectors in memory, in the core's item order (row i: `_item_ids[i]`),
        read in batches straight into one matrix (no second copy of the column while loading)."""
        rows, dimension = len(self._item_ids), self._dataset.schema.field(column).type.list_size
        vectors, row_ids = np.empty((rows, dimension), np.float32), np.empty(rows, np.uint64)
        filled = np.zeros(rows, bool)
        for batch in self._dataset.scanner(columns=["item_id", column], with_row_id=True, batch_size=CONTENT_BATCH_ROWS).to_batches():
            positions = np.fromiter((self._item_index[i] for i in batch.column("item_id").to_pylist()), np.int64, batch.num_rows)
            vectors[positions] = batch.column(column).flatten().to_numpy(zero_copy_only=False).reshape(-1, dimension)
            row_ids[positions] = batch.column("_rowid").to_numpy()
            filled[positions] = True
        if not filled.all():  # as many rows as ids, so an id twice leaves a row of the matrix unset
            raise TableContractError(f"items table version {self._dataset.version} holds an item_id more than once")
        return VectorMemory.of(row_ids, vectors)

    def content_search_info(self) -> dict:
        """How this version's content vectors are searched (GET /version)."""
        if self._content is None:
            vector = "Lance IVF-PQ" if self._content_indexed else "Lance, exact"
        else:
            vector = "exact in memory" if self._content.exact else "Lance IVF-PQ row ids, re-ranked in memory"
        return {**self.content_plan.info(), "vector_search": vector}

    def similar_items(self, item_id: str, k: int, signal: str = "content") -> list[tuple[str, float]]:
        """Nearest items to one item, itself left out.

        `behaviour`: cosine of ALS factors; `content`: the content-embedding index.
        """
        if item_id not in self._item_index:
            raise NotFoundError(f"unknown item_id '{item_id}'")
        if signal == "behaviour":
            return self.similar_by_behaviour(item_id, k)
        return self.search_items(self.content_vector(item_id), k, exclude_ids=[item_id])

    def search_items(
        self, vector: np.ndarray, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()
    ) -> list[tuple[str, float]]:
        """Items nearest to a content-space vector (a question's or an item's), filters applied first."""
        condition = item_condition(categories, exclude_ids)
        if self._content is None:
            rows = vector_search(self._dataset, self.content_index, vector, k, ["item_id"], condition).to_table()
            return list(zip(rows.column("item_id").to_pylist(), map(distance_to_similarity, rows.column("_distance").to_pylist())))
        positions, distances = self._content.search(vector, k, lambda: self._allowed(categories, exclude_ids), condition)
        return [(self._item_ids[p], distance_to_similarity(d)) for p, d in zip(positions.tolist(), distances.tolist())]

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]

    def _allowed(self, categories: list[str] | None, exclude_ids: list[str]) -> np.ndarray | None:
        """The items the filters allow as a mask over the core's items (`item_condition`'s meaning), None for all."""
        if categories is None and not exclude_ids:
            return None
        allowed = self._in_categories(categories) if categories is not None else np.ones(len(self._item_ids), bool)
        allowed[[self._item_index[i] for i in exclude_ids if i in self._item_index]] = False
        return allowed

    def content_vector(self, item_id: str) -> np.ndarray:
        """The item's content embedding as its table row holds it."""
        if self._content is not None:
            return self._content.memory.stored(self._item_index[item_id])
        row = self._items.search().where(f"item_id = {sql_string(item_id)}").select([CONTENT_INDEX.column]).limit(1).to_arrow()
        return np.asarray(row.column(CONTENT_INDEX.column)[0].as_py(), dtype=np.float32)


class FreshRecommender(RecommenderCore):
    """The served recommender with the changes written since its tables' build applied over it.

    - A deleted item is gone from every list, and a GET or /similar_items of it is unknown.
    - An upserted item takes its new title, category and content embedding (`content`, encoded
      like build-recs encodes items). One already in the table keeps its ALS factors and
      popularity; a new one has no behaviour yet, so it is a cold item exactly like a cold
      catalogue item: zero ALS factors (score 0 in /recommend, below any positive match),
      popularity 0, and found by content (/search_items, /similar_items) at once.
    - A user with logged events is folded in from their whole history (the table's seen items
      plus the logged ones, one default-weight event each, as `recent_item_ids` are), the
      solve implicit's `recalculate_user` makes; `folded` caches those vectors across overlays.
    - A forgotten user is unknown (popular items) unless they came back with new events.
    """

    def __init__(
        self,
        base: Recommender,
        changes: ChangeSet,
        content: Mapping[str, np.ndarray],
        folded: MutableMapping[tuple, np.ndarray] | None = None,
    ) -> None:
        self._base = base
        self.content_index = base.content_index
        self._dropped = frozenset(changes.items)  # their table rows (content vectors included) no longer count
        # of those, the ones the table holds: only they can take a place in its search results
        self._dropped_rows = sum(1 for item_id in self._dropped if base.has_item(item_id))
        self._content_ids = list(content)  # unit vectors (serving/overlay.advance_items), searched as one matrix
        self._content_row = {item_id: row for row, item_id in enumerate(self._content_ids)}
        self._content = np.stack(list(content.values())).astype(np.float32) if content else np.zeros((0, 0), np.float32)
        users, self._folded = self._users(base, changes, folded if folded is not None else {})
        self._init_changed(
            base,
            dropped_items=changes.deleted(ITEMS),
            updated={item.item_id: (item.title, item.category) for item in changes.upserted_items()},
            dropped_users=changes.forgotten | self._folded,
            added=users,
        )

    @staticmethod
    def _users(base: Recommender, changes: ChangeSet, folded: MutableMapping) -> tuple[dict[str, tuple[np.ndarray, list[str]]], frozenset[str]]:
        """The users with logged events folded in from their whole history, user_id -> (vector,
        seen items), and every user with logged events. One whose items are all new has nothing
        in the trained space to fold in from and is left out (served as unknown, like a
        forgotten user). The solve is against the table's items (whose YᵀY is made once), so a
        step re-solves only the users whose history changed: `folded` caches the solves across
        overlays, keyed by the history they were solved from."""
        logged: dict[str, list[str]] = {}
        for event in changes.events:
            logged.setdefault(event.user_id, []).append(event.item_id)
        deleted_items = changes.deleted(ITEMS)
        users, used = {}, {}
        for user_id, items in logged.items():
            history = [] if user_id in changes.forgotten else base.seen(user_id)
            known = tuple(i for i in dict.fromkeys(history + items) if base.has_item(i) and i not in deleted_items)
            key = (user_id, known)
            if known:
                used[key] = folded[key] if key in folded else base.fold_in(list(known))
                users[user_id] = (used[key], list(dict.fromkeys(history + items)))
        folded.clear()  # only what this overlay uses: a user's older histories are not asked again
        folded.update(used)
        return users, frozenset(logged)

    def for_user(self, user_id: str, k: int, *args, **kwargs) -> Recommendation:
        found = super().for_user(user_id, k, *args, **kwargs)
        if found.strategy == "als" and user_id in self._folded:  # the vector is a fold-in of logged events
            return Recommendation("fold_in", found.items, found.known)
        return found

    def similar_items(self, item_id: str, k: int, signal: str = "content") -> list[tuple[str, float]]:
        """As `Recommender.similar_items`, over the changed catalogue."""
        if not self.has_item(item_id):
            raise NotFoundError(f"unknown item_id '{item_id}'")
        if signal == "behaviour":
            return self.similar_by_behaviour(item_id, k)
        vector = self._content[self._content_row[item_id]] if item_id in self._content_row else self._base.content_vector(item_id)
        return self.search_items(vector, k, exclude_ids=[item_id])

    def search_items(
        self, vector: np.ndarray, k: int, categories: list[str] | None = None, exclude_ids: list[str] = ()
    ) -> list[tuple[str, float]]:
        """The table's nearest items without the changed ones, merged with the upserted items by cosine."""
        depth = k + min(self._dropped_rows, k)
        while True:
            found = self._base.search_items(vector, depth, categories, exclude_ids)
            kept = [(item_id, score) for item_id, score in found if item_id not in self._dropped]
            if len(found) < depth or len(kept) >= k:
                break
            depth *= DEEPEN_FACTOR
        fresh: list[tuple[str, float]] = []
        if self._content_ids:
            cosine = self._content @ (np.asarray(vector, dtype=np.float32) / max(float(np.linalg.norm(vector)), 1e-12))
            for index in np.argsort(-cosine, kind="stable"):  # best first: stop at k allowed
                item_id = self._content_ids[index]
                if item_id not in exclude_ids and (categories is None or self.category(item_id) in categories):
                    fresh.append((item_id, float(cosine[index])))
                    if len(fresh) == k:
                        break
        return sorted(kept + fresh, key=lambda pair: -pair[1])[:k]

    def encode(self, text: str) -> np.ndarray:
        return self._base.encode(text)

    def content_search_info(self) -> dict:
        """The base's: the items written since its build are searched as one matrix beside it."""
        return self._base.content_search_info()


def _stack(column) -> np.ndarray:
    """A fixed-size-list column as a (rows, dim) float32 matrix (an empty table gives (0, 0))."""
    values = column.to_numpy(zero_copy_only=False)
    return np.stack(values).astype(np.float32) if len(values) else np.zeros((0, 0), dtype=np.float32)


def _check_same_fit(users, items) -> None:  # LanceTables at their served versions
    """Users and items must come from one ALS fit, or their dot products mean nothing."""
    user_als, item_als = fit_of(users.schema.metadata), fit_of(items.schema.metadata)
    if user_als != item_als:
        raise TableContractError(f"users and items come from different ALS fits ({user_als!r} vs {item_als!r})")


