"""Lance query helpers shared by the read-side classes: search with the index's own metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    search = {**nearest(config, vectors[0] if len(vectors) == 1 else vectors, k), "refine_factor": None}
    found = dataset.scanner(columns=[], with_row_id=True, disable_scoring_autoprojection=True, nearest=search, filter=condition, prefilter=True)
    found = found.to_table()
    ids = found.column("_rowid").to_numpy()
    if len(vectors) == 1:
        return [ids]
    query = found.column("query_index").to_numpy()
    return [ids[query == j] for j in range(len(vectors))]


def check_encoder(table, encoder: Encoder) -> None:
    metadata = table.schema.metadata or {}
    written_by = metadata.get(META_ENCODER, b"").decode()
    dimension = int(metadata.get(META_DIMENSION, b"0") or 0)
    if written_by != encoder.name or dimension != encoder.dimension:
        raise TableContractError(
            f"table '{table.name}' was embedded by '{written_by}' ({dimension} dims); "
            f"the service encodes with '{encoder.name}' ({encoder.dimension} dims): rebuild it or configure the same model"
        )
