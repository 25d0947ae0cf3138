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


def where(query, condition: str | None):
    return query.where(condition, prefilter=True) if condition else query


def vector_query(table, vector: np.ndarray, config: IndexConfig):
    """A vector query with the metric and search parameters of the config that built the index."""
    return (
        table.search(vector, vector_column_name=config.column)
        .distance_type(config.distance_type)
        .nprobes(config.nprobes)
        .refine_factor(config.refine_factor)
    )


def nearest(config: IndexConfig, vector: np.ndarray, k: int, exact: bool = False) -> dict:
    """The same search as `vector_query`, as pylance's `nearest=` argument (its cheaper scanner)."""
    return {
        "column": config.column,
        "q": vector,
        "k": k,
        "metric": config.distance_type,
        "nprobes": config.nprobes,
        "refine_factor": config.refine_factor,
        "use_index": not exact,
    }


def check_encoder(table, encoder: Encoder) -> None:
    metadata = table.schema.metadata or {}
    written_by = metadata.get(META_ENCODER, b"").decode()
    dimension = int(metadata.get(META_DIMENSION, b"0") or 0)
    if written_by != encoder.name or dimension != encoder.dimension:
        raise TableContractError(
            f"table '{table.name}' was embedded by '{written_by}' ({dimension} dims); "
            f"the service encodes with '{encoder.name}' ({encoder.dimension} dims): rebuild it or configure the same model"
        )
