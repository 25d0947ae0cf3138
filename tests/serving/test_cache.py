import numpy as np
import pytest

from serving.cache import SemanticCache


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_close_questions_hit_and_far_ones_miss():
    cache = SemanticCache(dimension=2, threshold=0.9)
    cache.put(_unit(1, 0), ("hybrid", 5), {"v": 1}, "answers")
    assert cache.get(_unit(1, 0.2), ("hybrid", 5), {"v": 1}) == "answers"  # cosine 0.98
    assert cache.get(_unit(1, 1), ("hybrid", 5), {"v": 1}) is None  # cosine 0.71


def test_other_parameters_never_share_an_entry():
    cache = SemanticCache(dimension=2)
    cache.put(_unit(1, 0), ("hybrid", 5), 1, "five")
    assert cache.get(_unit(1, 0), ("hybrid", 3), 1) is None
    assert cache.get(_unit(1, 0), ("keyword", 5), 1) is None


def test_a_version_change_empties_the_cache():
    cache = SemanticCache(dimension=2)
    cache.put(_unit(1, 0), "p", {"answers": 1}, "old")
    assert cache.get(_unit(1, 0), "p", {"answers": 2}) is None
    assert cache.get(_unit(1, 0), "p", {"answers": 1}) is None  # gone, not hidden


def test_capacity_is_bounded_oldest_first():
    cache = SemanticCache(dimension=2, capacity=2)
    for i, vector in enumerate((_unit(1, 0), _unit(0, 1), _unit(-1, 0))):
        cache.put(vector, "p", 1, i)
    assert cache.get(_unit(1, 0), "p", 1) is None
    assert cache.get(_unit(0, 1), "p", 1) == 1 and cache.get(_unit(-1, 0), "p", 1) == 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        SemanticCache(dimension=2, threshold=0.0)


def test_clear_forgets_every_entry_and_counts_them():
    cache = SemanticCache(dimension=2, capacity=4)
    cache.put(_unit(1, 0), "p", {"v": 1}, "a")
    cache.put(_unit(0, 1), "p", {"v": 1}, "b")
    assert cache.clear() == 2
    assert cache.get(_unit(1, 0), "p", {"v": 1}) is None and cache.get(_unit(0, 1), "p", {"v": 1}) is None
    assert cache.clear() == 0
    cache.put(_unit(1, 0), "p", {"v": 1}, "c")  # still usable after a flush
    assert cache.get(_unit(1, 0), "p", {"v": 1}) == "c"
