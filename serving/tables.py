"""Lance query helpers shared by the read-side classes: search with the index's own metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from lance.dataset import ScannerBuilder

from features.encoders import Encoder
from features.errors import TableContractError
from features.schemas import META_DIMENSION, META_ENCODER, IndexConfig


@dataclass(frozen=True)
class Hit:
    """One ranked result: an id, its score and the row's display fields."""

    id: str
    score: float
    fields: dict


def nearest(config: IndexConfig, vector: np.ndarray, k: int, exact: bool = False) -> dict:
    """pylance's `nearest=` argument with the metric and search parameters of the config that
    built the index (nprobes as `IndexConfig.searched` resolved it; unresolved, Lance's default)."""
    return {
        "column": config.column,
        "q": vector,
        "k": k,
        "metric": config.distance_type,
        "refine_factor": config.refine_factor,
        "use_index": not exact,
    } | ({} if config.nprobes is None else {"nprobes": config.nprobes})


def vector_search(
    dataset, config: IndexConfig, vector: np.ndarray, k: int, columns: list[str], condition: str | None = None, exact: bool = False
):
    """The service's one vector search: the k rows nearest `vector` in a pylance dataset (with
    `_distance`), the filter applied before the search. A scanner: `.to_table()` runs it,
    `.explain_plan()` shows whether the index is used.

    pylance's scanner rather than lancedb's query builder: it costs less per query (see
    serving/answers.py) and the answers' keyword search already goes through it.
    """
    return dataset.scanner(columns=columns, nearest=nearest(config, vector, k, exact), filter=condition, prefilter=True)


def vector_candidates(dataset, config: IndexConfig, vectors: np.ndarray, k: int, condition: str | None = None) -> list[np.ndarray]:
    """For each row of `vectors`, the row ids of the k rows the vector index ranks nearest it
    (PQ distances, no refine): candidates for an exact re-rank from vectors held in memory
    (serving/memory.py). Nothing but ids is read, so no raw vector or text column is fetched
    from disk; several vectors are one batched call (Lance adds `query_index`)."""
    vectors = np.asarray(vectors, np.float32)
    builder = dataset._apply_default_scan_options(ScannerBuilder(dataset))  # as `dataset.scanner` starts
    builder = builder.columns([]).with_row_id(True).disable_scoring_autoprojection(True).prefilter(True)
    if condition is not None:
        builder = builder.filter(condition)
    builder = builder.nearest(**{**nearest(config, vectors[0], k), "refine_factor": None})  # checks the column, k and dimension
    if len(vectors) > 1:
        if not isinstance(getattr(builder, "_nearest", None), dict) or "q" not in builder._nearest:
            raise RuntimeError("this pylance keeps its vector query elsewhere: see serving/tables.py::query_batch and constraints.txt's pin")
        builder._nearest["q"] = query_batch(vectors)
    found = builder.to_scanner().to_table()
    ids = found.column("_rowid").to_numpy()
    if len(vectors) == 1:
        return [ids]
    query = found.column("query_index").to_numpy()
    return [ids[query == j] for j in range(len(vectors))]


def query_batch(vectors: np.ndarray) -> pa.ListArray:
    """Several query vectors as the list array pylance's batched search takes, without copying.

    Given a 2-D array, pylance builds that array itself through `pa.array` over Python floats
    (`lance.dataset._coerce_query_vector`): a Python loop over every float, under the GIL, in
    the one lane every concurrent question's search waits on (benchmarks/RESULTS.md,
    "Serving, seventeenth run"). So the search is set up with the first vector, which checks
    it as usual, and its query is then replaced by this array of the same type in the
    builder's `_nearest` (pylance's own attribute, pinned by constraints.txt; the tests
    compare every batch with pylance's own batched call).
    """
    rows, dimension = vectors.shape
    values = np.ascontiguousarray(vectors, np.float32).reshape(-1)
    missing = np.isnan(values)
    if missing.any():  # as pylance makes them: null, and 0 beneath (its search reads the values, not the nulls)
        values = np.where(missing, np.float32(0), values)
    flat = pa.array(values, mask=missing if missing.any() else None)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * dimension + 1, dimension, dtype=np.int32)), flat)


def check_encoder(table, encoder: Encoder) -> None:
    metadata = table.schema.metadata or {}
    written_by = metadata.get(META_ENCODER, b"").decode()
    dimension = int(metadata.get(META_DIMENSION, b"0") or 0)
    if written_by != encoder.name or dimension != encoder.dimension:
        raise TableContractError(
            f"table '{table.name}' was embedded by '{written_by}' ({dimension} dims); "
            f"the service encodes with '{encoder.name}' ({encoder.dimension} dims): rebuild it or configure the same model"
        )
