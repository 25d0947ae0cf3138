"""Every metric against values worked out by hand on tiny rankings."""

from __future__ import annotations

import math

import pytest

from features.metrics import (
    average_precision_at_k,
    coverage,
    mean_at_k,
    mean_popularity,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)

LOG2_3 = math.log2(3)


def test_precision_divides_by_k_even_for_a_short_ranking():
    assert precision_at_k(["a", "b", "c"], {"a", "c"}, 2) == 0.5
    assert precision_at_k(["a"], {"a"}, 4) == 0.25  # k larger than the candidate list
    assert precision_at_k([], {"a"}, 3) == 0.0


def test_recall_divides_by_the_relevant_count_and_is_undefined_without_any():
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z"}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z"}, 10) == pytest.approx(2 / 3)
    assert recall_at_k(["a"], set(), 10) is None


def test_a_repeated_id_counts_once():
    assert precision_at_k(["a", "a", "b"], {"a"}, 2) == 0.5
    assert recall_at_k(["a", "a"], {"a", "b"}, 2) == 0.5


def test_average_precision_by_hand():
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(k=3, |rel|=2)
    assert average_precision_at_k(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx((1 + 2 / 3) / 2)
    # one relevant id of three found at rank 2, k=2: (1/2) / min(2, 3)
    assert average_precision_at_k(["x", "a"], {"a", "b", "c"}, 2) == pytest.approx(0.25)
    assert average_precision_at_k(["x"], {"a"}, 5) == 0.0


def test_ndcg_binary_and_graded_by_hand():
    # binary: hit at rank 2 only; ideal has one relevant at rank 1
    assert ndcg_at_k(["x", "a"], {"a"}, 2) == pytest.approx(1 / LOG2_3)
    # graded: gains 1 at rank 1 and 2 at rank 2, ideal is 2 then 1
    dcg = 1 + 2 / LOG2_3
    ideal = 2 + 1 / LOG2_3
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 2) == pytest.approx(dcg / ideal)
    # ideal is cut at k: three relevant ids, k=1, the first is one of them
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1, "c": 1}, 1) == 1.0
    assert ndcg_at_k(["x"], {"a": 0}, 1) is None  # a zero grade is not relevant


def test_ties_in_grades_make_any_order_of_equals_ideal():
    assert ndcg_at_k(["b", "a"], {"a": 1, "b": 1}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1}, 2) == pytest.approx(1.0)


def test_reciprocal_rank_counts_only_the_first_hit_within_k():
    assert reciprocal_rank_at_k(["x", "y", "a", "b"], {"a", "b"}, 4) == pytest.approx(1 / 3)
    assert reciprocal_rank_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_mean_skips_queries_without_relevant_ids_and_zeroes_missing_rankings():
    rankings = {"u1": ["a", "b"], "u2": ["c"], "u3": ["a"]}
    relevant = {"u1": {"a"}, "u2": set(), "u4": {"z"}}
    result = mean_at_k(rankings, relevant, 2, ["precision", "recall", "ndcg"])
    assert result["queries"] == 2  # u2 has no test items, u3 none at all; u4 was not ranked
    assert result["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert result["precision"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["ndcg"] == pytest.approx(0.5)


def test_coverage_and_mean_popularity():
    rankings = [["a", "b", "c"], ["a", "d"]]
    assert coverage(rankings, catalogue_size=10, k=2) == pytest.approx(3 / 10)  # a, b, d
    assert mean_popularity(rankings, {"a": 0.5, "b": 0.1}, k=2) == pytest.approx((0.5 + 0.1 + 0.5 + 0.0) / 4)
    with pytest.raises(ValueError, match="k must be >= 1"):
        precision_at_k(["a"], {"a"}, 0)
