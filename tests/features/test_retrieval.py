from features.retrieval import cosine_distance_to_score, dot_distance_to_score, take_unseen


def test_take_unseen_skips_seen_and_duplicates_keeping_order():
    candidates = [("a", 0.9), ("b", 0.8), ("a", 0.7), ("c", 0.6), ("d", 0.5)]
    assert take_unseen(candidates, {"b"}, 2) == [("a", 0.9), ("c", 0.6)]


def test_take_unseen_returns_fewer_when_candidates_run_out():
    assert take_unseen([("a", 1.0)], set(), 5) == [("a", 1.0)]


def test_distances_become_similarities():
    assert dot_distance_to_score(-1.0) == 2.0
    assert cosine_distance_to_score(0.25) == 0.75
