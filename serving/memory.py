"""One answers table version held in RAM: its vectors (serving/vectors.py) and the response fields.

A search takes its candidate rows from Lance's indexes or from an exact search here, and the
re-ranking and the fields of the hits come from memory instead of disk (issue 16's profile).

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

from serving.vectors import VectorMemory, normalise_rows

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


class AnswerMemory(VectorMemory):
    """Unit float32 vectors and the response fields of one table version, by Lance row id."""

    def __init__(self, row_ids: np.ndarray, vectors: np.ndarray, norms: np.ndarray, fields: pa.Table) -> None:
        super().__init__(row_ids, vectors, norms)
        self.fields = fields
        self._columns = {name: _one_array(fields.column(name)) for name in fields.column_names}
        # every taken row's doc_id at once: indexing a Python array, where Arrow's `take` with its
        # call and conversion showed in py-spy at concurrency 32 (RESULTS, "Serving, fourteenth run")
        self._doc_ids = np.asarray(self._columns["doc_id"].to_pylist(), dtype=object)
        self._doc_ids_bytes = int(self._doc_ids.nbytes + sum(map(sys.getsizeof, self._doc_ids)))
        self._sources = _codes(self._columns["source"])
        tags = self._columns["tags"]
        self._tag_rows = pc.list_parent_indices(tags).to_numpy()
        self._tags = _codes(pc.list_flatten(tags))
        self._masks: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

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
            return None, MemoryPlan("lance", rows, vector_bytes, budget_bytes, f"{rows:,} vectors need {megabytes(vector_bytes)}")
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
                return None, MemoryPlan("lance", rows, held, budget_bytes, f"vectors and fields need more than {megabytes(held)}")
        vectors = vectors[:at]
        norms = normalise_rows(vectors)
        schema = pa.schema([dataset.schema.field(name) for name in FIELD_COLUMNS])
        # one chunk a column: Arrow's take over a chunked column concatenates it first, every call
        table = (pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()).combine_chunks()
        row_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
        memory = cls(row_ids, vectors, norms, table)
        return memory, MemoryPlan("memory", at, memory.nbytes, budget_bytes, f"{at:,} rows fit in {megabytes(memory.nbytes)}")

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
                row[column] = self.stored(position)
        return rows


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


def megabytes(size: int) -> str:
    """A size for a plan's reason, in MiB (the unit of RECQA_MEMORY_BUDGET_MB)."""
    return f"{size / (1 << 20):,.1f} MB"
