"""One answers table version held in RAM: what a search needs besides the indexes themselves.

Lance's own vector search spends most of its time outside the ANN: the refine step reads raw
vectors from disk by random access, and the text columns of the hits are fetched row by row
(issue 16's profile). With the unit vectors and the response fields in memory, Lance is asked
for candidate row ids only (IVF-PQ, or the full-text index), and the re-ranking and the fields
come from here. A table without a vector index (the build left it out below its
`ann_min_rows`) is searched exactly here instead, the filters a mask over its rows.

What is held must fit `RECQA_MEMORY_BUDGET_MB`; a table that does not is searched through
Lance as before (`AnswerMemory.load` returns None and says why).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

# The columns a response (or the overlay's merge) reads from a table row.
FIELD_COLUMNS = ("doc_id", "chunk_id", "answer", "question", "source", "tags")
# 1 GiB: the vectors (4 bytes a dimension) and fields of about 480,000 answer chunks like the
# bundled StackFAQ ones, 2.2 KB each at 384 dimensions (benchmarks/RESULTS.md, "Answer search
# from memory"); a larger table is searched through Lance unless the budget is raised.
DEFAULT_MEMORY_BUDGET_MB = 1024
# Filter masks kept per table version: requests mostly repeat a few filter combinations.
MASK_CACHE_SIZE = 64
_BATCH_ROWS = 8192  # rows read per batch while loading: the budget is checked between batches


@dataclass(frozen=True)
class MemoryPlan:
    """Which path searches a table version, and why (GET /version shows it)."""

    path: str  # "memory" or "lance"
    rows: int
    bytes: int  # held (memory) or needed at least (lance)
    budget_bytes: int
    reason: str

    def info(self) -> dict:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "budget_mb": self.budget_bytes // (1 << 20), "reason": self.reason}


class AnswerMemory:
    """Unit float32 vectors and the response fields of one table version, by Lance row id."""

    def __init__(self, row_ids: np.ndarray, vectors: np.ndarray, norms: np.ndarray, fields: pa.Table) -> None:
        self.row_ids = row_ids
        self.vectors = vectors  # (rows, dimension), each row of unit length: cosine is a dot product
        self.norms = norms  # each row's length as stored: a row asked for with its vector gets it as Lance has it
        self.fields = fields
        self._columns = {name: _one_array(fields.column(name)) for name in fields.column_names}
        # every taken row's doc_id at once: indexing a Python array, where Arrow's `take` with its
        # call and conversion showed in py-spy at concurrency 32 (RESULTS, "Serving, fourteenth run")
        self._doc_ids = np.asarray(self._columns["doc_id"].to_pylist(), dtype=object)
        self._doc_ids_bytes = int(self._doc_ids.nbytes + sum(map(sys.getsizeof, self._doc_ids)))
        self._order = np.argsort(row_ids, kind="stable")
        self._sorted_ids = row_ids[self._order]
        self._sources = _codes(self._columns["source"])
        tags = self._columns["tags"]
        self._tag_rows = pc.list_parent_indices(tags).to_numpy()
        self._tags = _codes(pc.list_flatten(tags))
        self._masks: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.norms.nbytes + self.fields.nbytes + self.row_ids.nbytes + self._doc_ids_bytes)

    @classmethod
    def load(cls, dataset, column: str, budget_bytes: int) -> tuple["AnswerMemory | None", MemoryPlan]:
        """The table version's vectors and fields if they fit `budget_bytes`, else None; and the plan.

        The vectors' size is known before reading; the fields are read in batches and the load
        stops at the first batch past the budget, so it never holds much more than the budget.
        """
        rows = int(dataset.count_rows())
        dimension = dataset.schema.field(column).type.list_size
        vector_bytes = rows * dimension * 4
        if vector_bytes > budget_bytes:
            return None, MemoryPlan("lance", rows, vector_bytes, budget_bytes, f"{rows:,} vectors need {_mb(vector_bytes)}")
        vectors = np.empty((rows, dimension), np.float32)
        ids, batches, held, at = [], [], vector_bytes, 0
        scanner = dataset.scanner(columns=[*FIELD_COLUMNS, column], with_row_id=True, batch_size=_BATCH_ROWS, scan_in_order=True)
        for batch in scanner.to_batches():
            n = batch.num_rows
            if at + n > rows:  # the version cannot change under us; this would be a Lance bug
                raise RuntimeError(f"answers table version {dataset.version} returned more than its {rows:,} rows")
            flat = batch.column(column).flatten().to_numpy(zero_copy_only=False)
            vectors[at : at + n] = flat.reshape(n, dimension)
            ids.append(batch.column("_rowid").to_numpy())
            fields = batch.select(list(FIELD_COLUMNS))
            batches.append(fields)
            held += fields.nbytes + 12 * n
            at += n
            if held > budget_bytes:
                return None, MemoryPlan("lance", rows, held, budget_bytes, f"vectors and fields need more than {_mb(held)}")
        vectors = vectors[:at]
        norms = np.linalg.norm(vectors, axis=1)
        vectors /= np.maximum(norms, 1e-12)[:, None]
        schema = pa.schema([dataset.schema.field(name) for name in FIELD_COLUMNS])
        # one chunk a column: Arrow's take over a chunked column concatenates it first, every call
        table = (pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()).combine_chunks()
        row_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
        memory = cls(row_ids, vectors, norms, table)
        return memory, MemoryPlan("memory", at, memory.nbytes, budget_bytes, f"{at:,} rows fit in {_mb(memory.nbytes)}")

    def positions(self, row_ids: np.ndarray) -> np.ndarray:
        """The memory rows of Lance row ids (ids of this version: every one is held)."""
        row_ids = np.asarray(row_ids, np.uint64)
        at = np.searchsorted(self._sorted_ids, row_ids)
        at = np.minimum(at, len(self._sorted_ids) - 1)
        if len(row_ids) and not np.array_equal(self._sorted_ids[at], row_ids):
            raise RuntimeError("Lance returned a row id this table version's memory does not hold")
        return self._order[at]

    def mask(self, sources: list[str] | None, tags: list[str] | None) -> np.ndarray | None:
        """Rows the filters allow (features.filters.answer_condition's meaning), or None for all."""
        if sources is None and tags is None:
            return None
        key = (None if sources is None else tuple(sorted(set(sources))), None if tags is None else tuple(sorted(set(tags))))
        with self._lock:
            found = self._masks.get(key)
        if found is not None:
            return found
        allowed = np.ones(self.rows, bool)
        if sources is not None:
            allowed &= self._sources.isin(sources)
        if tags is not None:
            has = np.zeros(self.rows, bool)
            has[self._tag_rows[self._tags.isin(tags)]] = True
            allowed &= has
        allowed.flags.writeable = False
        with self._lock:
            if len(self._masks) >= MASK_CACHE_SIZE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = allowed
        return allowed

    def nearest(self, queries: np.ndarray, masks: list[np.ndarray | None], depths: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact cosine search of each query (one matrix product for all): per query, the memory
        rows of its `depth` nearest allowed rows, best first (ties by row order, as Lance's
        flat search breaks them by row id), and their cosine distances."""
        similarity = self.vectors @ _unit(queries).T  # (rows, queries): one pass over the matrix for all
        out = []
        for j, (allowed, depth) in enumerate(zip(masks, depths)):
            scores = similarity[:, j]
            candidates = np.arange(self.rows) if allowed is None else np.flatnonzero(allowed)
            out.append(self._best(candidates, scores[candidates], depth))
        return out

    def rerank(self, query: np.ndarray, positions: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best of candidate rows by exact cosine, best first, with their distances."""
        unique = np.unique(positions)
        scores = self.vectors[unique] @ _unit(query[None, :])[0]
        return self._best(unique, scores, depth)

    def take(self, positions: np.ndarray, with_vectors: bool, column: str) -> list[dict]:
        """The rows at `positions` as a Lance search returns them (fields, and vectors if asked).

        Each row holds its doc_id at once and reads its other fields from memory when first
        asked for (`MemoryRow`): a search takes 40 chunks or more and a response shows 10, and
        turning every field of every taken row into Python objects was the largest piece of a
        request's time under the GIL (benchmarks/RESULTS.md, "Serving, eighth run").
        """
        doc_ids = self._doc_ids[np.asarray(positions, np.int64)].tolist()
        rows = [MemoryRow(self._columns, position, doc_id) for position, doc_id in zip(np.asarray(positions).tolist(), doc_ids)]
        if with_vectors:
            for row, position in zip(rows, positions):
                row[column] = self.vectors[position] * self.norms[position]
        return rows

    @staticmethod
    def _best(candidates: np.ndarray, scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        if len(candidates) > depth > 0:  # every row tied with the depth-th stays, for the tie-break below
            kept = -scores <= np.partition(-scores, depth - 1)[depth - 1]
            candidates, scores = candidates[kept], scores[kept]
        order = np.lexsort((candidates, -scores))[: max(depth, 0)]
        return candidates[order], (1.0 - scores[order]).astype(np.float32)


class MemoryRow(dict):
    """A taken row: `doc_id` set, each other field of FIELD_COLUMNS read from the memory's columns
    on first access (`row[field]`) and kept. Only item access reads lazily; `get`, `in` and
    iteration see the fields read so far, which is all the search path uses."""

    __slots__ = ("_columns", "_position")

    def __init__(self, columns: dict[str, pa.Array], position: int, doc_id: str) -> None:
        super().__init__(doc_id=doc_id)
        self._columns, self._position = columns, position

    def __missing__(self, key: str) -> object:
        column = self._columns.get(key)
        if column is None:
            raise KeyError(key)
        value = self[key] = column[self._position].as_py()
        return value


class _Codes:
    """A string column as dictionary codes: `isin` compares integers, not Python strings."""

    def __init__(self, codes: np.ndarray, values: dict[str, int]) -> None:
        self.codes, self.values = codes, values

    def isin(self, wanted: list[str]) -> np.ndarray:
        codes = [self.values[value] for value in wanted if value in self.values]
        return np.isin(self.codes, codes) if codes else np.zeros(len(self.codes), bool)


def _codes(strings: pa.Array) -> _Codes:
    encoded = pc.dictionary_encode(strings)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)  # null matches no value
    return _Codes(codes, {value: code for code, value in enumerate(encoded.dictionary.to_pylist())})


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one Array: its only chunk as it is (Arrow's combine_chunks copies even one
    chunk, which would hold the fields twice), else the chunks joined."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _mb(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MB"
