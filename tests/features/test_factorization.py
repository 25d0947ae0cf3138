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
