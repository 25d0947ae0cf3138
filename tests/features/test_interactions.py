import numpy as np

from features.interactions import build_matrix, build_vocabulary, event_weight
from features.schemas import Interaction


def _event(user, item, event=None, value=None):
    return Interaction(user_id=user, item_id=item, timestamp=0.0, event=event, value=value)


def test_vocabulary_is_sorted_and_dense():
    assert build_vocabulary(["b", "a", "b", "c"]) == {"a": 0, "b": 1, "c": 2}


def test_stronger_events_weigh_more_and_value_scales():
    assert event_weight(_event("u", "i", "view")) < event_weight(_event("u", "i", "click"))
    assert event_weight(_event("u", "i", "click")) < event_weight(_event("u", "i", "purchase"))
    assert event_weight(_event("u", "i", "view", 3.0)) == 3 * event_weight(_event("u", "i", "view"))


def test_repeated_events_add_up_and_catalogue_items_get_columns():
    matrix = build_matrix([_event("u1", "a", "view"), _event("u1", "a", "view"), _event("u2", "b", "view")], item_ids=["z"])
    assert matrix.user_ids == ["u1", "u2"]
    assert matrix.item_ids == ["a", "b", "z"]
    assert matrix.matrix.toarray().tolist() == [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert matrix.seen_item_ids(0) == ["a"]
    np.testing.assert_array_equal(matrix.item_popularity(), [1, 1, 0])


def test_zero_weight_events_are_neither_seen_nor_popular():
    matrix = build_matrix([_event("u1", "a", "view", 0.0), _event("u1", "b", "view")])
    assert matrix.seen_item_ids(0) == ["b"]
    np.testing.assert_array_equal(matrix.item_popularity(), [0, 1])


def test_half_life_halves_the_weight_of_an_event_that_old():
    from features.interactions import SECONDS_PER_DAY, WeightConfig

    events = [
        Interaction("u1", "a", 0.0, "view"),
        Interaction("u1", "b", 10 * SECONDS_PER_DAY, "view"),
    ]
    matrix = build_matrix(events, config=WeightConfig(half_life_days=10))
    np.testing.assert_allclose(matrix.matrix.toarray(), [[0.5, 1.0]])


def test_min_support_filters_users_and_items_until_stable():
    from features.interactions import WeightConfig

    # u3 has one item; dropping u3 leaves item c with one user, which then drops too
    events = [_event(u, i, "view") for u, i in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "c")]]
    matrix = build_matrix(events, config=WeightConfig(min_user_interactions=2, min_item_interactions=2))
    assert matrix.user_ids == ["u1", "u2"]
    assert matrix.item_ids == ["a", "b", "c"]  # c stays as a cold column
    assert matrix.matrix.toarray().tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]


def test_configured_event_weights_are_used():
    from features.interactions import WeightConfig

    matrix = build_matrix([_event("u", "a", "view")], config=WeightConfig(event_weights={"view": 3.0}))
    assert matrix.matrix.toarray().tolist() == [[3.0]]
