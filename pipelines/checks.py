"""Checks a run's tables must pass before `publish` releases them (read-only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from features.schemas import (
    ALS_INDEX,
    ANSWER_INDEX,
    ANSWER_TEXT_COLUMN,
    ANSWERS_TABLE,
    CONTENT_INDEX,
    ITEMS_TABLE,
    META_DIMENSION,
    META_ENCODER,
    USERS_TABLE,
    IndexConfig,
    fit_of,
)
from pipelines import lance_io

VECTOR_COLUMNS: dict[str, tuple[IndexConfig, ...]] = {
    USERS_TABLE: (ALS_INDEX,),
    ITEMS_TABLE: (ALS_INDEX, CONTENT_INDEX),
    ANSWERS_TABLE: (ANSWER_INDEX,),
}
EMBEDDED_TABLES = (ITEMS_TABLE, ANSWERS_TABLE)


def check_tables(
    warehouse: str, tables: Sequence[str] | Mapping[str, int], ann_min_rows: int = ALS_INDEX.min_rows_for_ann
) -> list[str]:
    """Problems with the named tables (latest versions, or the versions a mapping names).

    Empty when they may be published. Publish passes the exact versions it is about to
    release, so a run that commits between the check and the release is not let through.
    """
    versions = dict(tables) if isinstance(tables, Mapping) else dict.fromkeys(tables)
    problems: list[str] = []
    datasets = {}
    for name, version in versions.items():
        ds = lance_io.dataset(warehouse, name, version)
        if ds is None:
            problems.append(f"{name}: table does not exist")
            continue
        datasets[name] = ds
        rows = ds.count_rows()
        if rows == 0:
            problems.append(f"{name}: table is empty")
            continue
        metadata = ds.schema.metadata or {}
        if name in EMBEDDED_TABLES and not (metadata.get(META_ENCODER) and metadata.get(META_DIMENSION)):
            problems.append(f"{name}: no encoder name/dimension in the table metadata")
        indexed = {column for index in ds.list_indices() for column in index.get("fields", [])}
        if name == ANSWERS_TABLE and ANSWER_TEXT_COLUMN not in indexed:  # a run killed before its BM25 index
            problems.append(f"{name}.{ANSWER_TEXT_COLUMN}: no full-text index (keyword and hybrid search need it)")
        for config in VECTOR_COLUMNS.get(name, ()):
            vectors = ds.to_table(columns=[config.column]).column(config.column)
            values = np.asarray(vectors.combine_chunks().flatten(), dtype=np.float32)
            if vectors.null_count or not np.isfinite(values).all():
                problems.append(f"{name}.{config.column}: null or non-finite vectors")
            if name != USERS_TABLE and rows >= ann_min_rows and config.column not in indexed:
                problems.append(f"{name}.{config.column}: {rows} rows but no vector index")
    if USERS_TABLE in datasets and ITEMS_TABLE in datasets:
        if fit_of(datasets[USERS_TABLE].schema.metadata) != fit_of(datasets[ITEMS_TABLE].schema.metadata):
            problems.append("users and items come from different ALS fits")
    return problems
