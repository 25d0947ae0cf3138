"""Ranking helpers on ids and scores, shared by the service and the evaluation."""

from __future__ import annotations

from collections.abc import Collection, Iterable


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


def dot_distance_to_score(distance: float) -> float:
    """Lance reports dot-product search as distance = 1 - dot; the score is the dot itself."""
    return 1.0 - float(distance)


def cosine_distance_to_score(distance: float) -> float:
    """Lance reports cosine search as distance = 1 - cosine similarity."""
    return 1.0 - float(distance)
