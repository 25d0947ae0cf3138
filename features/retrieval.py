"""Ranking helpers on ids and scores, shared by the service and the evaluation."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np


def take_unseen(candidates: Iterable[tuple[str, float]], seen: Collection[str], k: int) -> list[tuple[str, float]]:
    """The first k (id, score) candidates whose id is not in `seen`, order kept.

    Candidates arrive best first; an id that appears twice keeps its first (best) score.
    """
    taken: list[tuple[str, float]] = []
    emitted: set[str] = set()
    for identifier, score in candidates:
        if identifier in seen or identifier in emitted:
            continue
        taken.append((identifier, score))
        emitted.add(identifier)
        if len(taken) == k:
            break
    return taken


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, skipping -inf (masked) and NaN entries;
    equal scores keep index order, so the same scores always give the same list.

    A catalogue's scores are narrowed first to the ones at least the k-th best of an evenly
    spaced sample (`_sampled_floor`): those k sample entries are in `scores`, so the k-th best
    of all is at least that floor and nothing that belongs in the answer is left out. One
    comparison over the catalogue then replaces a full partition of it.
    """
    if k <= 0 or len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    floor = _sampled_floor(scores, k)
    candidates = np.flatnonzero(scores >= floor) if floor > -np.inf else np.flatnonzero(scores > -np.inf)
    if len(candidates) > k:
        part = np.argpartition(-scores[candidates], k - 1)[:k]
        threshold = scores[candidates[part]].min()
        candidates = candidates[scores[candidates] >= threshold]  # every tie at the boundary, then trim by index
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def _sampled_floor(scores: np.ndarray, k: int) -> Any:
    """The k-th highest of about sqrt(n * k) evenly spaced scores, NaN left out (-inf for a
    short array, where sampling saves nothing): about that many scores are at least it, and
    always k or more."""
    stride = int(np.sqrt(len(scores) / k))
    if stride < 2:
        return -np.inf
    sample = scores[::stride]
    if np.isnan(sample).any():
        sample = sample[~np.isnan(sample)]
    return np.partition(sample, len(sample) - k)[len(sample) - k] if len(sample) >= k else -np.inf


def distance_to_similarity(distance: float) -> float:
    """Lance reports dot search as 1 - dot and cosine search as 1 - cosine: undo either."""
    return 1.0 - float(distance)


# Cormack et al. (2009): k = 60 damps the top ranks so no single list dominates the fusion.
RRF_K = 60


def rrf_fuse(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(id) = sum over lists of 1 / (k + rank), best first.

    Only ranks are used, so lists whose scores live on different scales (BM25, cosine)
    combine without calibration. Ties keep the order of first appearance.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, identifier in enumerate(ranking, start=1):
            scores[identifier] = scores.get(identifier, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


# BM25 points worth one unit of cosine in `score_fuse`. Chosen on the two standing benchmarks at
# the service's candidate depth (40 per list for k=10): the highest SciFact-train nDCG@10 whose
# StackFAQ nDCG@10 is not below vector search alone. 0.004: SciFact 0.720 (BM25 0.694, vector
# 0.674, RRF 0.704), StackFAQ 0.952 (vector 0.952, RRF 0.876). A corpus with other BM25 scales
# should re-tune it (`recqa evaluate qa --bm25-weight`).
BM25_WEIGHT = 0.004


def score_fuse(
    vector: Sequence[tuple[str, float]], keyword: Sequence[tuple[str, float]], bm25_weight: float = BM25_WEIGHT
) -> list[tuple[str, float]]:
    """Hybrid by scores: cosine + bm25_weight * BM25, best first.

    Unlike RRF, a weak keyword match moves a document little and a strong one a lot, so a
    BM25 list much worse than the vector list (paraphrased questions) cannot drag good vector
    hits down. A document the vector list lacks takes the list's lowest cosine (its own is no
    higher); one the keyword list lacks takes BM25 0.
    """
    floor = min((score for _, score in vector), default=0.0)
    cosine, bm25 = dict(vector), dict(keyword)
    scores = {i: cosine.get(i, floor) + bm25_weight * bm25.get(i, 0.0) for i in dict.fromkeys([*cosine, *bm25])}
    return sorted(scores.items(), key=lambda pair: -pair[1])


def mmr(
    query: np.ndarray, candidates: Sequence[str], vectors: np.ndarray, k: int, lambda_: float = 0.5
) -> list[tuple[str, float]]:
    """Maximal marginal relevance: trade relevance to the query against similarity to picks.

    `vectors` are the candidates' unit vectors, in order; lambda_ = 1 is pure relevance.
    Returns (id, relevance) for the k picked, in pick order.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda must be within [0, 1], got {lambda_}")
    relevance = vectors @ query
    picked: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)  # each candidate's highest similarity to a pick
    available = np.ones(len(candidates), dtype=bool)
    while available.any() and len(picked) < k:
        gains = lambda_ * relevance - (1 - lambda_) * (redundancy if picked else 0.0)
        best = int(np.argmax(np.where(available, gains, -np.inf)))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[best])  # one product per pick, not per pair
    return [(candidates[i], float(relevance[i])) for i in picked]


def bm25_weight_of(metadata: dict[bytes, bytes] | None) -> float:
    """The hybrid BM25 weight an answers table was built to be served with (BM25_WEIGHT if it names none)."""
    from features.schemas import META_BM25_WEIGHT

    value = (metadata or {}).get(META_BM25_WEIGHT)
    return float(value) if value else BM25_WEIGHT
