"""Above the threshold the IVF-PQ index is built and the serving search uses it, keeping recall@10 against exact search."""

from __future__ import annotations

import dataclasses

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from features.schemas import CONTENT_INDEX
from pipelines import lance_io
from serving.tables import vector_search

ROWS = 50_000
DIMENSION = 384
CLUSTERS = 200


def _clustered_unit_vectors(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Text-embedding-like data: unit vectors around cluster centres (pure Gaussians are a worst case)."""
    centres = rng.normal(size=(CLUSTERS, DIMENSION))
    vectors = centres[rng.integers(0, CLUSTERS, rows)] + 0.6 * rng.normal(size=(rows, DIMENSION))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow
def test_index_is_used_above_the_threshold_with_recall_at_10_of_at_least_095(tmp_path):
    rng = np.random.default_rng(0)
    vectors = _clustered_unit_vectors(rng, ROWS)
    table = pa.table(
        {
            "item_id": [f"i{i}" for i in range(ROWS)],
            CONTENT_INDEX.column: pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMENSION),
        }
    )
    warehouse = str(tmp_path)
    lance_io.write_table(warehouse, "big", table)
    lance_io.write_table(warehouse, "small", table.slice(0, 1_000))
    config = dataclasses.replace(CONTENT_INDEX, min_rows_for_ann=ROWS)
    assert lance_io.create_vector_indexes(warehouse, "big", [config]) == [CONTENT_INDEX.column]
    assert lance_io.create_vector_indexes(warehouse, "small", [config]) == []

    big = lancedb.connect(warehouse).open_table("big").to_lance()
    queries = vectors[rng.choice(ROWS, 100, replace=False)] + 0.05 * rng.normal(size=(100, DIMENSION)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recalls = []
    for query, truth in zip(queries, exact):
        search = vector_search(big, config, query, 10, ["item_id"])  # the search the service runs
        found = {int(i[1:]) for i in search.to_table().column("item_id").to_pylist()}
        recalls.append(len(found & set(truth.tolist())) / 10)
    plan = search.explain_plan(verbose=True)
    assert "ANNSubIndex" in plan or "ANNIvfPartition" in plan, plan
    assert np.mean(recalls) >= 0.95
    small = lancedb.connect(warehouse).open_table("small").to_lance()
    small_plan = vector_search(small, config, queries[0], 10, ["item_id"]).explain_plan(verbose=True)
    assert "ANNSubIndex" not in small_plan and "ANNIvfPartition" not in small_plan, small_plan  # below the threshold: exact
