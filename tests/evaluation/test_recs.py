"""One contract for every recommender: on a checkerboard, users get items of their own block."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from evaluation.recs import METHODS, popularity

BLOCK = 8  # users 0-7 like items 0-7, users 8-15 like items 8-15


def checkerboard(held_out: int = 3) -> csr_matrix:
    """Each user has every item of their block except `held_out` of them (a different few each)."""
    rows, cols = [], []
    for user in range(2 * BLOCK):
        start = (user // BLOCK) * BLOCK
        hidden = {start + (user + i) % BLOCK for i in range(held_out)}
        for item in range(start, start + BLOCK):
            if item not in hidden:
                rows.append(user)
                cols.append(item)
    return csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(2 * BLOCK, 2 * BLOCK))


@pytest.mark.parametrize("method", [m for m in METHODS if m != "popularity"])
def test_personalised_methods_recommend_the_unseen_items_of_the_users_block(method):
    matrix = checkerboard()
    factory, grid = METHODS[method]
    params = {name: values[0] for name, values in grid.items()}
    if method == "bpr":
        params["learning_rate"] = 0.05
    if method == "als":
        params["factors"] = 4  # a rank-2 structure: 16 factors on 16 users fit every cell, unseen ones at ~0
    ranked = factory(matrix, seed=0, **params)(np.arange(2 * BLOCK), 3)
    for user, items in enumerate(ranked):
        start = (user // BLOCK) * BLOCK
        assert len(items) == 3
        assert not set(items) & set(matrix[user].indices.tolist()), "a seen item was recommended"
        assert all(start <= item < start + BLOCK for item in items), f"user {user} got {items}"


def test_popularity_ranks_by_distinct_users_and_skips_seen_items():
    matrix = csr_matrix(np.array([[1, 0, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=np.float32))
    ranked = popularity(matrix)(np.array([0, 1]), 2)
    assert ranked == [[1, 2], [2, 3]]  # counts: item0 3, item1 2, item2 1, item3 1 (ties by index)
