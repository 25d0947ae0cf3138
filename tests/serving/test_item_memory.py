"""The items' content vectors searched from memory: the answers Lance gives, without its reads."""

import shutil

import lance
import numpy as np
import pyarrow as pa
import pytest

from features.filters import item_condition
from features.schemas import CONTENT_INDEX, ITEMS_TABLE
from pipelines import lance_io
from registry.log import published_versions
from serving.store import Store
from tests.conftest import FakeEncoder
from tests.serving.test_memory_batching import searches_behind_a_gate

ROWS = 2_000
CATEGORIES = ["books", "garden", "kitchen", "toys", None]
# (categories, excluded item ids) as /search_items takes them
FILTERS = [(None, []), (["garden", "toys"], []), (None, ["x00007", "x00011", "nope"]), (["books"], ["x00005"]), ([], [])]


def _items(fake_warehouse, tmp_path, indexed: bool) -> tuple[str, dict[str, int], np.ndarray]:
    """A copy of the fake warehouse whose items are ROWS made-up items with clustered content
    vectors of assorted lengths (and a content IVF-PQ index if `indexed`); the versions to serve,
    and the vectors (row i: item x0000i)."""
    warehouse = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, warehouse)
    old = lance.dataset(str(warehouse / f"{ITEMS_TABLE}.lance")).to_table()
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, 384))
    vectors = (centres[rng.integers(0, 20, ROWS)] + 0.4 * rng.normal(size=(ROWS, 384))).astype(np.float32)
    vectors *= rng.uniform(0.5, 3.0, size=(ROWS, 1)).astype(np.float32)  # not unit: cosine must not depend on length
    order = rng.permutation(ROWS)  # rows not in id order
    columns = {}
    for field in old.schema:
        if field.name == "item_id":
            columns[field.name] = pa.array([f"x{i:05d}" for i in order], field.type)
        elif field.name == "category":
            columns[field.name] = pa.array([CATEGORIES[i % len(CATEGORIES)] for i in order], field.type)
        elif field.name == CONTENT_INDEX.column:
            columns[field.name] = pa.FixedSizeListArray.from_arrays(pa.array(vectors[order].ravel(), pa.float32()), 384)
        else:  # titles, popularity, ALS vectors: the first old row's, repeated
            columns[field.name] = pa.array([old.column(field.name)[0].as_py()] * ROWS, field.type)
    version = lance_io.write_table(str(warehouse), ITEMS_TABLE, pa.table(columns, schema=old.schema), old.schema.metadata)
    if indexed:
        dataset = lance.dataset(str(warehouse / f"{ITEMS_TABLE}.lance"))
        version = dataset.create_index(CONTENT_INDEX.column, "IVF_PQ", metric="cosine", num_partitions=8, num_sub_vectors=16).version
    return str(warehouse), {**published_versions(str(warehouse)), ITEMS_TABLE: version}, vectors


def _store(warehouse: str, versions: dict[str, int], budget_mb: int):
    return Store(warehouse, FakeEncoder(), versions, memory_budget_mb=budget_mb).recommender


def _exact(vectors: np.ndarray, query: np.ndarray, k: int, categories, excluded) -> list[tuple[str, float]]:
    """The k nearest by cosine, computed here from the vectors the table was written with."""
    cosine = (vectors @ query) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    allowed = [i for i in range(ROWS) if (categories is None or CATEGORIES[i % len(CATEGORIES)] in categories) and f"x{i:05d}" not in excluded]
    best = sorted(allowed, key=lambda i: -cosine[i])[:k]
    return [(f"x{i:05d}", float(cosine[i])) for i in best]


@pytest.fixture(scope="module")
def unindexed(fake_warehouse, tmp_path_factory):
    return _items(fake_warehouse, tmp_path_factory.mktemp("unindexed"), indexed=False)


@pytest.fixture(scope="module")
def indexed(fake_warehouse, tmp_path_factory):
    return _items(fake_warehouse, tmp_path_factory.mktemp("indexed"), indexed=True)


def test_a_catalogue_without_the_index_is_searched_exactly_in_memory_as_lance_searches_it(unindexed):
    warehouse, versions, vectors = unindexed
    memory, lance_path = _store(warehouse, versions, 1024), _store(warehouse, versions, 0)
    assert memory.content_search_info()["path"] == "memory" and memory.content_search_info()["vector_search"] == "exact in memory"
    assert lance_path.content_search_info()["path"] == "lance" and "need" in lance_path.content_search_info()["reason"]
    queries = np.random.default_rng(1).normal(size=(4, 384)).astype(np.float32)
    for query in queries:
        for categories, excluded in FILTERS:
            found = memory.search_items(query, 10, categories, excluded)
            expected = _exact(vectors, query, 10, categories, excluded)
            assert [i for i, _ in found] == [i for i, _ in expected]
            np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-5)
            through_lance = lance_path.search_items(query, 10, categories, excluded)
            assert [i for i, _ in through_lance] == [i for i, _ in found]
            np.testing.assert_allclose([s for _, s in through_lance], [s for _, s in found], atol=1e-5)


def test_an_indexed_catalogue_reranks_the_index_candidates_exactly(indexed):
    warehouse, versions, vectors = indexed
    memory, lance_path = _store(warehouse, versions, 1024), _store(warehouse, versions, 0)
    assert memory.content_search_info()["vector_search"] == "Lance IVF-PQ row ids, re-ranked in memory"
    assert lance_path.content_search_info()["vector_search"] == "Lance IVF-PQ"
    for query in np.random.default_rng(2).normal(size=(4, 384)).astype(np.float32):
        for categories, excluded in FILTERS:
            found = memory.search_items(query, 10, categories, excluded)
            candidates = [i for i, _ in lance_path.search_items(query, 10, categories, excluded)]  # PQ-ranked, PQ scores
            assert sorted(i for i, _ in found) == sorted(candidates)  # the same candidates...
            rows = [int(i[1:]) for i, _ in found]
            exact = (vectors[rows] @ query) / (np.linalg.norm(vectors[rows], axis=1) * np.linalg.norm(query))
            np.testing.assert_allclose([s for _, s in found], exact, atol=1e-5)  # ...scored exactly
            assert all(a >= b for a, b in zip(exact, exact[1:]))  # and ranked by it


def test_similar_items_by_content_reads_the_items_vector_from_memory(unindexed):
    warehouse, versions, vectors = unindexed
    memory, lance_path = _store(warehouse, versions, 1024), _store(warehouse, versions, 0)
    np.testing.assert_allclose(memory.content_vector("x00042"), vectors[42], rtol=1e-6)
    np.testing.assert_allclose(lance_path.content_vector("x00042"), vectors[42], rtol=1e-6)
    found = memory.similar_items("x00042", 5, "content")
    assert "x00042" not in [i for i, _ in found]
    expected = _exact(vectors, vectors[42], 5, None, ["x00042"])
    assert [i for i, _ in found] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-5)
    assert [i for i, _ in found] == [i for i, _ in lance_path.similar_items("x00042", 5, "content")]


@pytest.mark.parametrize("which", ["unindexed", "indexed"])
def test_concurrent_searches_with_their_own_filters_equal_searches_alone(which, request):
    warehouse, versions, _ = request.getfixturevalue(which)
    alone, shared = _store(warehouse, versions, 1024), _store(warehouse, versions, 1024)
    asked = [(query, categories, excluded, k) for query in np.random.default_rng(3).normal(size=(3, 384)).astype(np.float32)
             for categories, excluded in FILTERS for k in (3, 10)]
    expected = [alone.search_items(q, k, c, e) for q, c, e, k in asked]
    # behind the first wait those of its batch key: all (exact), or those of its filters and k (index)
    exact = shared._content.exact
    key = ("exact",) if exact else ("index", item_condition(asked[0][1], asked[0][2]), asked[0][3])
    behind = len(asked) - 1 if exact else sum(1 for one in asked[1:] if one[1:] == asked[0][1:])
    found, batches = searches_behind_a_gate(shared._content, lambda one: shared.search_items(one[0], one[3], one[1], one[2]), asked, key, behind)
    for mine, theirs in zip(found, expected):
        assert [i for i, _ in mine] == [i for i, _ in theirs]
        np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], atol=1e-6)
    assert sum(batches) == len(asked) and max(batches) > 1  # searches did share batches
