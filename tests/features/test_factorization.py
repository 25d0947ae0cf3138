"""ALS on a checkerboard: two user groups, two item groups; the right answer is obvious."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from features.factorization import fit_als
from features.schemas import ALSConfig


def _checkerboard(users_per_group: int = 20, items_per_group: int = 10) -> np.ndarray:
    dense = np.zeros((2 * users_per_group, 2 * items_per_group), dtype=np.float32)
    dense[:users_per_group, :items_per_group] = 1
    dense[users_per_group:, items_per_group:] = 1
    return dense


def test_held_out_item_of_the_users_own_group_ranks_first():
    dense = _checkerboard()
    dense[0, 3] = 0  # user 0 (group A) has not seen item 3 (group A)
    dense[25, 15] = 0  # user 25 (group B) has not seen item 15 (group B)
    factors = fit_als(csr_matrix(dense), ALSConfig(factors=4, iterations=20, regularization=0.01))
    scores = factors.user_factors @ factors.item_factors.T
    for user, held_out in ((0, 3), (25, 15)):
        unseen = np.where(dense[user] == 0)[0]
        assert unseen[np.argmax(scores[user, unseen])] == held_out


def test_same_random_state_gives_the_same_factors():
    matrix = csr_matrix(_checkerboard())
    config = ALSConfig(factors=4, iterations=5, random_state=7)
    first, second = fit_als(matrix, config), fit_als(matrix, config)
    np.testing.assert_allclose(first.item_factors, second.item_factors)
    assert first.user_factors.shape == (40, 4) and first.user_factors.dtype == np.float32


def test_empty_matrix_is_refused():
    with pytest.raises(ValueError, match="empty"):
        fit_als(csr_matrix((3, 3), dtype=np.float32), ALSConfig())


def test_fold_in_matches_implicits_recalculate_user_and_lands_in_the_right_group():
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from features.factorization import fold_in

    config = ALSConfig(factors=4, iterations=10, regularization=0.05, alpha=2.0)
    dense = _checkerboard()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=4, iterations=10, regularization=0.05, alpha=2.0, random_state=0)
        model.fit(csr_matrix(dense), show_progress=False)
        session = csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0] + [0] * 10], dtype=np.float32))
        expected = model.recalculate_user(0, session)
    folded = fold_in(model.item_factors, np.array([0, 1]), np.array([1.0, 1.0]), config)
    np.testing.assert_allclose(folded, expected, rtol=1e-3, atol=1e-4)
    scores = model.item_factors @ folded
    assert set(np.argsort(-scores)[:10]) == set(range(10))  # group A's items first


def test_explanation_is_the_most_similar_seen_item():
    from features.factorization import explain_by_similarity

    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])
    assert explain_by_similarity(factors, np.array([0, 1]), np.array([2])) == [0]
    # one product for the whole list: each recommended item gets its own closest seen item,
    # the first seen one on a tie (item 4 is as close to 0 as to 1)
    assert explain_by_similarity(factors, np.array([1, 0]), np.array([2, 3, 4])) == [0, 1, 1]
    assert explain_by_similarity(factors, np.array([], dtype=int), np.array([2, 3])) == [None, None]
    assert explain_by_similarity(factors, np.array([0]), np.array([], dtype=int)) == []


def test_fold_in_of_a_long_history_with_assorted_weights_is_implicits_user_step_and_counts_a_repeat_twice():
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from features.factorization import fold_in

    rng = np.random.default_rng(7)
    interactions = csr_matrix((rng.random((60, 300)) < 0.05).astype(np.float32))
    config = ALSConfig(factors=16, iterations=5, regularization=0.1, alpha=3.0)
    history = rng.choice(300, 120, replace=False)
    weights = rng.uniform(0.5, 4.0, len(history))
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=16, iterations=5, regularization=0.1, alpha=3.0, random_state=0)
        model.fit(interactions, show_progress=False)
        session = csr_matrix((weights.astype(np.float32), (np.zeros(len(history), int), history)), shape=(1, 300))
        expected = model.recalculate_user(0, session)
    folded = fold_in(model.item_factors, history, weights, config)
    np.testing.assert_allclose(folded, expected, rtol=1e-3, atol=1e-4)
    # an item listed twice adds its confidence twice: the user step over both listings, written out
    y = np.asarray(model.item_factors, np.float64)
    twice = np.array([history[0], history[0], history[1]])
    weight = np.array([1.0, 2.0, 1.5])
    a = y.T @ y + config.regularization * np.eye(16)
    b = np.zeros(16)
    for index, w in zip(twice, weight):
        a += (config.alpha * w - 1.0) * np.outer(y[index], y[index])
        b += config.alpha * w * y[index]
    np.testing.assert_allclose(fold_in(model.item_factors, twice, weight, config), np.linalg.solve(a, b), rtol=1e-5, atol=1e-6)
