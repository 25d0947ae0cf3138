"""Recommendation evaluation: ALS as served against popularity, item-kNN and BPR baselines.

Each method is tuned on a validation split carved out of the training part, then refitted
on the whole training part and scored on the test split. ALS is trained for the test by the
real `build-recs` job on the training events, and ranked through `Recommender.for_user`, the
code the service answers with (exclusion of seen items and the popular fallback included).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.factorization import fit_als
from features.interactions import InteractionMatrix, build_matrix
from features.metrics import coverage, mean_at_k, mean_popularity
from features.retrieval import take_unseen
from features.schemas import ALSConfig, Interaction, Item
from features.splits import Split

RECS_METRICS = ("precision", "recall", "ndcg", "map")
ALS_GRID = {"factors": (8, 16, 32), "regularization": (0.01, 0.1, 1.0, 10.0)}
BPR_GRID = {"factors": (32, 64), "learning_rate": (0.01, 0.05)}
KNN_GRID = {"K": (20, 50, 100)}


@dataclass(frozen=True)
class Dataset:
    """Events and items as the build read them, the files they came from, and per input its hash and counts."""

    events: list[Interaction]
    items: list[Item]
    files: tuple[str, ...]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


# A method takes the training matrix and its parameters and returns a ranker:
# ranker(user row indices, k) -> one list of item indices per user, seen items excluded.
Ranker = Callable[[np.ndarray, int], list[list[int]]]


def _implicit_ranker(model, matrix) -> Ranker:
    """implicit's recommend, keeping only real unseen items.

    implicit pads a short list with the user's seen items (item-kNN at score 0, BPR at -inf)
    and with -1 ids; a served list never holds either, so neither may a baseline's.
    """

    def rank(users: np.ndarray, k: int) -> list[list[int]]:
        ids, scores = model.recommend(users, matrix[users], N=k, filter_already_liked_items=True)
        ranked = []
        for u, row, score_row in zip(users, np.atleast_2d(ids), np.atleast_2d(scores)):
            seen = set(matrix[u].indices.tolist())  # once per user, not once per listed item
            ranked.append([int(i) for i, s in zip(row, score_row) if i >= 0 and np.isfinite(s) and i not in seen])
        return ranked

    return rank


def popularity(matrix, **_: Any) -> Ranker:
    counts = np.asarray((matrix > 0).sum(axis=0)).ravel()
    order = np.argsort(-counts, kind="stable")

    def rank(users: np.ndarray, k: int) -> list[list[int]]:
        return [[i for i, _ in take_unseen(((int(j), 0.0) for j in order), set(matrix[u].indices.tolist()), k)] for u in users]

    return rank


def item_knn(matrix, K: int = 50, **_: Any) -> Ranker:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=K)
    model.fit(matrix, show_progress=False)
    return _implicit_ranker(model, matrix)


def bpr(matrix, factors: int = 64, learning_rate: float = 0.01, seed: int = 0, **_: Any) -> Ranker:
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        # one thread: implicit's lock-free parallel SGD gives different factors for the same seed
        model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate, iterations=100, random_state=seed, num_threads=1)
        model.fit(matrix, show_progress=False)
    return _implicit_ranker(model, matrix)


def als_in_memory(matrix, factors: int = 32, regularization: float = 0.05, seed: int = 0, **_: Any) -> Ranker:
    """ALS ranked by exact dot product with seen items dropped: the served ranking for exact search."""
    fitted = fit_als(matrix, dataclasses.replace(ALSConfig(), factors=factors, regularization=regularization, random_state=seed))

    def rank(users: np.ndarray, k: int) -> list[list[int]]:
        scores = fitted.user_factors[users] @ fitted.item_factors.T
        return [[i for i, _ in take_unseen(((int(j), 0.0) for j in np.argsort(-row, kind="stable")), set(matrix[u].indices.tolist()), k)]
                for u, row in zip(users, scores)]

    return rank


METHODS: dict[str, tuple[Callable[..., Ranker], Mapping[str, Sequence[Any]]]] = {
    "popularity": (popularity, {}),
    "item_knn": (item_knn, KNN_GRID),
    "bpr": (bpr, BPR_GRID),
    "als": (als_in_memory, ALS_GRID),
}


def rankings_by_id(matrix: InteractionMatrix, ranker: Ranker, users: Sequence[str], k: int) -> dict[str, list[str]]:
    """user_id -> ranked item ids, for the users the matrix knows (others get nothing)."""
    index = {user_id: i for i, user_id in enumerate(matrix.user_ids)}
    known = [u for u in users if u in index]
    ranked = ranker(np.array([index[u] for u in known], dtype=np.int64), k) if known else []
    return {u: [matrix.item_ids[i] for i in row] for u, row in zip(known, ranked)}


def score(rankings: Mapping[str, Sequence[str]], split: Split, matrix: InteractionMatrix, k: int) -> dict[str, float]:
    """Ranking metrics at k over the test users, plus coverage and mean item popularity."""
    relevant = split.test_items()
    row = mean_at_k(rankings, relevant, k, RECS_METRICS)
    users_per_item = np.asarray((matrix.matrix > 0).sum(axis=0)).ravel() / max(1, matrix.matrix.shape[0])
    popularity_share = dict(zip(matrix.item_ids, users_per_item.tolist()))
    lists = [rankings.get(u, []) for u in relevant]
    row["coverage"] = coverage(lists, len(matrix.item_ids), k)
    row["mean_popularity"] = mean_popularity(lists, popularity_share, k)
    return row


def grid_size(method: str) -> int:
    """How many points `tune` fits for `method`."""
    return len(list(itertools.product(*METHODS[method][1].values())))


def tune(
    method: str, split: Split, item_ids: list[str], k: int, seed: int, progress: Callable[[], None] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The grid point with the best validation nDCG@k, and every point tried; `progress()` after each."""
    factory, grid = METHODS[method]
    matrix = build_matrix(split.train, item_ids)
    tried = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        rankings = rankings_by_id(matrix, factory(matrix.matrix, seed=seed, **params), list(split.test_items()), k)
        tried.append({"params": params, "ndcg": mean_at_k(rankings, split.test_items(), k, ["ndcg"])["ndcg"]})
        if progress is not None:
            progress()
    best = max(tried, key=lambda t: t["ndcg"]) if tried else {"params": {}}
    return best["params"], tried
