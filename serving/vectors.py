"""A table version's vectors held in RAM, and the vector searches of concurrent requests run together.

Lance's own vector search spends most of its time outside the ANN: the refine step reads raw
vectors from disk by random access, and the columns of the hits are fetched row by row (issue
16's profile). With unit vectors in memory, Lance is asked for candidate row ids only
(IVF-PQ) and the exact re-ranking happens here; a table without a vector index (the build
left it out below its `ann_min_rows`) is searched exactly here, filters as masks over its
rows. The answers (serving/memory.py) and the items' content vectors (serving/recommender.py)
are both searched this way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from features.schemas import IndexConfig
from serving.batching import Batcher
from serving.tables import vector_candidates


class VectorMemory:
    """Unit float32 vectors of one table version, each memory row with its Lance row id."""

    def __init__(self, row_ids: np.ndarray, vectors: np.ndarray, norms: np.ndarray) -> None:
        self.row_ids = row_ids
        self.vectors = vectors  # (rows, dimension), each row of unit length: cosine is a dot product
        self.norms = norms  # each row's length as stored: a row asked for with its vector gets it as Lance has it
        self._order = np.argsort(row_ids, kind="stable")
        self._sorted_ids = row_ids[self._order]

    @classmethod
    def of(cls, row_ids: np.ndarray, vectors: np.ndarray) -> "VectorMemory":
        """From the vectors as stored (normalised here, in place)."""
        norms = normalise_rows(vectors)
        return cls(row_ids, vectors, norms)

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    def stored(self, position: int) -> np.ndarray:
        """The row's vector as the table holds it (not unit length)."""
        return self.vectors[position] * self.norms[position]

    def positions(self, row_ids: np.ndarray) -> np.ndarray:
        """The memory rows of Lance row ids (ids of this version: every one is held)."""
        row_ids = np.asarray(row_ids, np.uint64)
        at = np.searchsorted(self._sorted_ids, row_ids)
        at = np.minimum(at, len(self._sorted_ids) - 1)
        if len(row_ids) and not np.array_equal(self._sorted_ids[at], row_ids):
            raise RuntimeError("Lance returned a row id this table version's memory does not hold")
        return self._order[at]

    def nearest(self, queries: np.ndarray, masks: list[np.ndarray | None], depths: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact cosine search of each query (one matrix product for all): per query, the memory
        rows of its `depth` nearest allowed rows, best first (equal scores in memory row order:
        for the answers their scan order, for the items their ids' order), and their cosine distances."""
        similarity = self.vectors @ unit(queries).T  # (rows, queries): one pass over the matrix for all
        out = []
        for j, (allowed, depth) in enumerate(zip(masks, depths)):
            scores = similarity[:, j]
            candidates = np.arange(self.rows) if allowed is None else np.flatnonzero(allowed)
            out.append(self._best(candidates, scores[candidates], depth))
        return out

    def rerank(self, query: np.ndarray, positions: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best of candidate rows by exact cosine, best first, with their distances."""
        unique = np.unique(positions)
        scores = self.vectors[unique] @ unit(query[None, :])[0]
        return self._best(unique, scores, depth)

    @staticmethod
    def _best(candidates: np.ndarray, scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        if len(candidates) > depth > 0:  # every row tied with the depth-th stays, for the tie-break below
            kept = -scores <= np.partition(-scores, depth - 1)[depth - 1]
            candidates, scores = candidates[kept], scores[kept]
        order = np.lexsort((candidates, -scores))[: max(depth, 0)]
        return candidates[order], (1.0 - scores[order]).astype(np.float32)


class VectorSearch:
    """Cosine searches of one table version's vectors held in `memory`, concurrent ones batched.

    `exact` (the caller's choice, and a must where the version has no vector index on
    `config.column`): one matrix product for the batch, filters as masks. Else Lance's index
    gives each query's candidate row ids (one batched call, filters as its prefilter
    condition), as many as its refine step would have re-ranked from disk, and they are
    re-ranked exactly from memory.
    """

    def __init__(self, dataset, config: IndexConfig, memory: VectorMemory, exact: bool) -> None:
        self._dataset, self._config, self.memory, self.exact = dataset, config, memory, exact
        self._batcher: Batcher = Batcher(self._batch)

    def search(
        self, vector: np.ndarray, depth: int, mask: Callable[[], np.ndarray | None], condition: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The memory rows of the `depth` nearest rows the filters allow, best first, and their
        cosine distances. `mask()` (rows allowed, None for all) and `condition` (the same filters
        as a Lance SQL condition) must say the same thing: the exact path reads one, the index the
        other (so the mask is made only for an exact search)."""
        vector = np.asarray(vector, np.float32)
        if self.exact:
            return self._batcher.submit(("exact",), (vector, mask(), depth))
        return self._batcher.submit(("index", condition, depth), (vector, None, depth))

    def _batch(self, key: tuple, searches: list[tuple[np.ndarray, np.ndarray | None, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        memory = self.memory
        vectors = np.stack([vector for vector, _, _ in searches])
        if key[0] == "exact":
            return memory.nearest(vectors, [mask for _, mask, _ in searches], [depth for _, _, depth in searches])
        _, condition, depth = key
        candidates = vector_candidates(self._dataset, self._config, vectors, depth * max(self._config.refine_factor or 1, 1), condition)
        return [memory.rerank(vector, memory.positions(ids), depth) for vector, ids in zip(vectors, candidates)]


def has_vector_index(dataset, column: str) -> bool:
    """Whether the dataset version has a vector (not full-text) index on `column`."""
    return any(index.get("type") != "Inverted" and column in index.get("fields", ()) for index in dataset.list_indices())


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row of a float32 matrix to unit length, in place; the rows' lengths before."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # no temporary the size of the matrix
    vectors /= np.maximum(norms, 1e-12)[:, None]
    return norms


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
