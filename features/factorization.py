"""Implicit ALS fit with an explicit random_state, single-threaded BLAS as implicit wants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from features.schemas import ALSConfig


@dataclass(frozen=True)
class Factors:
    """User and item factors of one fit; rows align with the matrix vocabularies."""

    user_factors: np.ndarray  # (n_users, factors) float32
    item_factors: np.ndarray  # (n_items, factors) float32


def fit_als(user_items: csr_matrix, config: ALSConfig) -> Factors:
    """Fit implicit ALS on a users x items confidence matrix.

    implicit multiplies confidences by `alpha` itself, so the matrix holds raw weights.
    BLAS is pinned to one thread: implicit parallelises itself and a threaded BLAS under it
    oversubscribes the cores (implicit warns about exactly this).
    """
    from implicit.cpu.als import AlternatingLeastSquares  # the CPU class: factors come back as numpy

    if user_items.shape[0] == 0 or user_items.nnz == 0:
        raise ValueError("cannot fit ALS on an empty interaction matrix")
    with threadpool_limits(1, "blas"):  # inside: the constructor checks the BLAS threads too
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.random_state,
            calculate_training_loss=False,
        )
        model.fit(user_items.astype(np.float32).tocsr(), show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    if not (np.isfinite(users).all() and np.isfinite(items).all()):
        raise ArithmeticError("ALS produced non-finite factors; lower alpha or raise regularization")
    return Factors(user_factors=users, item_factors=items)


def item_gram(item_factors: np.ndarray) -> np.ndarray:
    """YᵀY in float64: the part of every fold-in's system that does not depend on the user.
    A served core computes it once, not per request (it reads the whole item matrix)."""
    factors = np.asarray(item_factors, dtype=np.float64)
    return factors.T @ factors


def fold_in(
    item_factors: np.ndarray, item_idx: np.ndarray, weights: np.ndarray, config: ALSConfig, gram: np.ndarray | None = None
) -> np.ndarray:
    """A user vector from items alone, solving the ALS user step against fixed item factors.

    The same least squares as implicit's `recalculate_user`: confidence c = alpha * weight,
    A = YᵀY + Σ (c - 1) y yᵀ + λI, b = Σ c y. Lets the service place a new or session user
    in the trained space without refitting. `gram` is `item_gram(item_factors)` when the
    caller holds it.
    """
    gram = item_gram(item_factors) if gram is None else gram
    # the items' sums as two products over their rows (an item listed twice counts twice), not a
    # Python loop of outer products: a long history costs two small matrix products
    idx = np.asarray(item_idx).reshape(-1)
    if idx.dtype.kind not in "iu":
        if idx.size:
            raise TypeError(f"item_idx must hold integer row numbers, not {idx.dtype}")
        idx = idx.astype(np.int64)  # an empty list: no items, the prior alone
    rows = np.asarray(np.asarray(item_factors)[idx], dtype=np.float64)  # the listed rows only
    confidence = config.alpha * np.asarray(weights, dtype=np.float64).reshape(-1)
    matrix = gram + config.regularization * np.eye(gram.shape[0]) + (rows * (confidence - 1.0)[:, None]).T @ rows
    return np.linalg.solve(matrix, confidence @ rows).astype(np.float32)


def explain_by_similarity(item_factors: np.ndarray, seen_idx: Sequence[int] | np.ndarray, recommended_idx: Sequence[int] | np.ndarray) -> list[int | None]:
    """For each recommended item, the seen item whose factors are closest (dot) to its own
    (the first such on a tie), or None when nothing was seen.

    A cheap stand-in for implicit's `explain` that needs no per-user solve; one product for a
    whole list, not one per recommended item.
    """
    seen, recommended = np.asarray(seen_idx, dtype=np.int64), np.asarray(recommended_idx, dtype=np.int64)
    if len(seen) == 0:
        return [None] * len(recommended)
    scores = item_factors[recommended] @ item_factors[seen].T
    return seen[np.argmax(scores, axis=1)].tolist()
