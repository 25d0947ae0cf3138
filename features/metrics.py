"""Ranking metrics at k for one query (a user or a question), and their means over queries.

Definitions follow the usual offline-evaluation conventions (those of implicit's `evaluation`
module and of BEIR's pytrec_eval runs), spelled out so the tests can check them by hand:
- a ranking is a list of ids, best first; only its first k count, and a repeated id counts once;
- `relevant` maps an id to its gain (1 for implicit feedback; graded qrels for QA); ids with
  gain <= 0 are not relevant;
- precision@k divides by k even when fewer than k ids were ranked (a short list is penalised);
- recall@k divides by the number of relevant ids; AP@k by min(k, that number);
- nDCG@k uses gain / log2(rank + 1) and the ideal ordering of the relevant gains;
- a query with no relevant ids has no defined recall, AP or nDCG: `mean_at_k` skips it, and
  reports how many it evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

Relevance = Mapping[str, float]


def _top(ranking: Sequence[str], k: int) -> list[str]:
    """The first k distinct ids of a ranking."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return list(dict.fromkeys(ranking))[:k]


def _relevant(relevant: Relevance | Iterable[str]) -> dict[str, float]:
    if isinstance(relevant, Mapping):
        return {i: float(g) for i, g in relevant.items() if g > 0}
    return {i: 1.0 for i in relevant}


def hits_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> int:
    rel = _relevant(relevant)
    return sum(i in rel for i in _top(ranking, k))


def precision_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> float:
    return hits_at_k(ranking, relevant, k) / k


def recall_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> float | None:
    rel = _relevant(relevant)
    return hits_at_k(ranking, rel, k) / len(rel) if rel else None


def average_precision_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> float | None:
    rel = _relevant(relevant)
    if not rel:
        return None
    hits, total = 0, 0.0
    for rank, item in enumerate(_top(ranking, k), start=1):
        if item in rel:
            hits += 1
            total += hits / rank
    return total / min(k, len(rel))


def ndcg_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> float | None:
    rel = _relevant(relevant)
    if not rel:
        return None
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([rel.get(i, 0.0) for i in _top(ranking, k)])
    ideal = np.sort(np.fromiter(rel.values(), dtype=float))[::-1][:k]
    return float(gains @ discounts[: len(gains)] / (ideal @ discounts[: len(ideal)]))


def reciprocal_rank_at_k(ranking: Sequence[str], relevant: Relevance | Iterable[str], k: int) -> float | None:
    rel = _relevant(relevant)
    if not rel:
        return None
    return next((1.0 / rank for rank, item in enumerate(_top(ranking, k), start=1) if item in rel), 0.0)


METRICS: dict[str, Callable[[Sequence[str], Relevance | Iterable[str], int], float | None]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "mrr": reciprocal_rank_at_k,
}


def mean_at_k(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, Relevance | Iterable[str]], k: int, names: Iterable[str]
) -> dict[str, float]:
    """Each metric averaged over the queries that have relevant ids, plus `queries` evaluated.

    A query with relevant ids but no ranking counts as a ranking of nothing (every metric 0).
    """
    queries = [q for q in relevant if _relevant(relevant[q])]
    result: dict[str, float] = {"queries": float(len(queries))}
    for name in names:
        metric = METRICS[name]
        values = [metric(rankings.get(q, []), relevant[q], k) for q in queries]
        result[name] = float(np.mean(values)) if values else 0.0
    return result


def coverage(rankings: Iterable[Sequence[str]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be >= 1, got {catalogue_size}")
    shown = set()
    for ranking in rankings:
        shown.update(_top(ranking, k))
    return len(shown) / catalogue_size


def mean_popularity(rankings: Iterable[Sequence[str]], popularity: Mapping[str, float], k: int) -> float:
    """Mean popularity of every recommended id (0 for ids the popularity map lacks)."""
    values = [popularity.get(i, 0.0) for ranking in rankings for i in _top(ranking, k)]
    return float(np.mean(values)) if values else 0.0
