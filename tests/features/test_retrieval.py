import numpy as np
import pytest

from features.retrieval import distance_to_similarity, take_unseen, top_k


def test_take_unseen_skips_seen_and_duplicates_keeping_order():
    candidates = [("a", 0.9), ("b", 0.8), ("a", 0.7), ("c", 0.6), ("d", 0.5)]
    assert take_unseen(candidates, {"b"}, 2) == [("a", 0.9), ("c", 0.6)]


def test_take_unseen_returns_fewer_when_candidates_run_out():
    assert take_unseen([("a", 1.0)], set(), 5) == [("a", 1.0)]


def test_lance_distances_become_the_similarities_they_encode(tmp_path):
    """Lance's dot distance is 1 - dot and its cosine distance 1 - cosine: checked on a real table."""
    import lance
    import numpy as np
    import pyarrow as pa

    vectors = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    table = pa.table({"id": ["a", "b", "c"], "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 2)})
    dataset = lance.write_dataset(table, str(tmp_path / "t.lance"))
    query = np.array([1.0, 2.0], dtype=np.float32)
    for metric, to_score, expected in (
        ("dot", distance_to_similarity, vectors @ query),
        ("cosine", distance_to_similarity, (vectors @ query) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)),
    ):
        hits = dataset.to_table(nearest={"column": "vector", "q": query, "k": 3, "metric": metric}).to_pylist()
        scores = {hit["id"]: to_score(hit["_distance"]) for hit in hits}
        np.testing.assert_allclose([scores[i] for i in "abc"], expected, rtol=1e-5)


def test_rrf_rewards_agreement_between_lists():
    from features.retrieval import rrf_fuse

    fused = rrf_fuse([["a", "b", "c"], ["b", "d"]], k=60)
    assert [i for i, _ in fused] == ["b", "a", "d", "c"]
    assert fused[0][1] == 1 / 62 + 1 / 61
    assert fused[1][1] == 1 / 61


def test_mmr_with_lambda_one_is_relevance_order_and_lower_lambda_diversifies():
    import numpy as np

    from features.retrieval import mmr

    query = np.array([1.0, 0.0])
    # a and a2 are near duplicates; b is less relevant but different
    vectors = np.array([[0.99, 0.141], [0.98, 0.199], [0.6, -0.8]])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert [i for i, _ in mmr(query, ["a", "a2", "b"], vectors, k=2, lambda_=1.0)] == ["a", "a2"]
    assert [i for i, _ in mmr(query, ["a", "a2", "b"], vectors, k=2, lambda_=0.3)] == ["a", "b"]


def test_top_k_is_best_first_and_skips_masked_entries():
    scores = np.array([0.1, 0.9, -np.inf, 0.5, 0.7], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 4, 3]
    assert top_k(scores, 10).tolist() == [1, 4, 3, 0]  # k past the candidates: only finite ones
    assert top_k(scores, 0).tolist() == []
    assert top_k(np.full(3, -np.inf), 2).tolist() == []


def test_top_k_breaks_ties_by_index_even_across_the_partition_boundary():
    scores = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    assert top_k(scores, 3).tolist() == [1, 4, 0]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, size=1000).astype(np.float64)
    expected = sorted(range(1000), key=lambda i: (-many[i], i))[:25]
    assert top_k(many, 25).tolist() == expected


@pytest.mark.parametrize("size", [1, 7, 40, 1_000, 20_000])
def test_top_k_of_a_catalogue_equals_a_full_sort_whatever_the_ties_and_masks(size):
    # large arrays are narrowed by a sampled floor first: it must never leave out an index
    # that a full sort by (score descending, index) would return, ties and -inf included
    rng = np.random.default_rng(size)
    for trial in range(30):
        scores = rng.integers(0, [3, 50, 10**6][trial % 3], size=size).astype(np.float32)
        if trial % 4 == 1:
            scores[rng.random(size) < 0.9] = -np.inf  # most masked, as a selective filter does
        if trial % 5 == 2:
            scores = np.sort(scores)  # the best at the end, between the sample's points
        if trial % 7 == 3:
            scores[::3] = -np.inf  # masks on the sample's stride
        if trial % 6 == 4:
            scores[:: max(1, int(np.sqrt(size / 10)))] = 10**7  # the best exactly on the sample's points (k=10)
        full = sorted((i for i in range(size) if scores[i] > -np.inf), key=lambda i: (-scores[i], i))
        for k in (1, 2, 10, 25, size + 3):
            assert top_k(scores, k).tolist() == full[:k], (trial, k)


def test_top_k_skips_nan_scores_and_still_finds_k_real_ones():
    scores = np.zeros(10_000, dtype=np.float32)
    points = np.arange(0, len(scores), 31)  # the sample's points (stride 31 for k=10)
    scores[points] = np.arange(1, len(points) + 1)  # only they score
    scores[points[-5:]] = np.nan  # five of them NaN, the highest ones
    real = [i for i in range(10_000) if not np.isnan(scores[i])]
    assert top_k(scores, 10).tolist() == sorted(real, key=lambda i: (-scores[i], i))[:10]
    assert top_k(np.array([np.nan, 1.0, np.nan, 2.0]), 3).tolist() == [3, 1]


def test_score_fusion_adds_weighted_bm25_to_cosine_with_floors_for_missing_documents():
    from features.retrieval import score_fuse

    vector = [("a", 0.80), ("b", 0.70), ("c", 0.60)]
    keyword = [("c", 30.0), ("d", 20.0), ("a", 1.0)]
    fused = dict(score_fuse(vector, keyword, bm25_weight=0.01))
    assert fused == pytest.approx({"a": 0.81, "b": 0.70, "c": 0.90, "d": 0.60 + 0.20})  # d takes the vector floor
    assert [i for i, _ in score_fuse(vector, keyword, 0.01)] == ["c", "a", "d", "b"]


def test_a_weak_keyword_list_barely_moves_the_vector_order_where_rrf_would_reorder_it():
    from features.retrieval import rrf_fuse, score_fuse

    vector = [("good", 0.90), ("ok", 0.60), ("poor", 0.30)]
    keyword = [("ok", 2.0), ("poor", 1.5)]  # weak matches: few shared words
    assert [i for i, _ in score_fuse(vector, keyword, 0.004)] == ["good", "ok", "poor"]
    assert [i for i, _ in rrf_fuse([[i for i, _ in vector], [i for i, _ in keyword]])][0] == "ok"
    assert [i for i, _ in score_fuse(vector, [("poor", 200.0)], 0.004)][0] == "poor"  # a strong match still wins
    assert score_fuse([], [("x", 5.0)], 0.004) == [("x", 0.02)]
