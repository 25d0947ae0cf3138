"""build-recs on the bundled ms-store data, checked against counts taken with the csv module."""

import csv

import lance
import numpy as np
import pytest

from features.schemas import ITEMS_TABLE, META_ALS, META_DIMENSION, META_FIT, META_ENCODER, USERS_TABLE
from tests.conftest import MS_CATALOG


@pytest.fixture(scope="module")
def users(fake_warehouse):
    return lance.dataset(str(fake_warehouse / f"{USERS_TABLE}.lance")).to_table()


@pytest.fixture(scope="module")
def items(fake_warehouse):
    return lance.dataset(str(fake_warehouse / f"{ITEMS_TABLE}.lance")).to_table()


def test_one_row_per_distinct_user_with_their_seen_items(users, usage_rows):
    expected_seen = {}
    for user_id, item_id, _ in usage_rows:
        expected_seen.setdefault(user_id, set()).add(item_id)
    assert users.num_rows == len(expected_seen)
    seen = dict(zip(users.column("user_id").to_pylist(), users.column("seen_item_ids").to_pylist()))
    assert {u: set(s) for u, s in seen.items()} == expected_seen


def test_one_row_per_distinct_item_with_catalogue_fields(items, usage_rows):
    with MS_CATALOG.open(newline="") as handle:
        catalogue = {row[0]: row[1] for row in csv.reader(handle)}
    expected_ids = set(catalogue) | {item for _, item, _ in usage_rows}
    assert sorted(items.column("item_id").to_pylist()) == sorted(expected_ids)
    titles = dict(zip(items.column("item_id").to_pylist(), items.column("title").to_pylist()))
    assert all(titles[i] == catalogue[i] for i in catalogue)


def test_popularity_counts_distinct_buyers(items, usage_rows):
    buyers = {}
    for user_id, item_id, _ in usage_rows:
        buyers.setdefault(item_id, set()).add(user_id)
    popularity = dict(zip(items.column("item_id").to_pylist(), items.column("popularity").to_pylist()))
    assert popularity == {i: len(b) for i, b in buyers.items()}


def test_vectors_have_the_configured_dimensions_and_no_nan(users, items):
    for table, column, dimension in ((users, "vector", 32), (items, "vector", 32), (items, "content_vector", 384)):
        matrix = np.stack(table.column(column).to_numpy(zero_copy_only=False))
        assert matrix.shape == (table.num_rows, dimension)
        assert np.isfinite(matrix).all()
    content = np.stack(items.column("content_vector").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(content, axis=1), 1.0, atol=1e-4)


def test_tables_record_encoder_and_als_config(items, users):
    metadata = items.schema.metadata
    assert metadata[META_ENCODER] == b"all-MiniLM-L6-v2" and metadata[META_DIMENSION] == b"384"
    assert b'"random_state": 42' in metadata[META_ALS]
    assert META_ALS in users.schema.metadata
    assert metadata[META_FIT].startswith(b"recs-") and users.schema.metadata[META_FIT] == metadata[META_FIT]  # one run, one fit id: its candidate
