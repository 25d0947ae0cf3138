"""A user folded into the trained space from a history of items: recqa's `fold_in` against
implicit's `recalculate_user` on the same item factors and histories, in one run.

The service folds a user in on `/recommend` with `recent_item_ids`, and the follower folds a
user with new events from their whole history; both call `features/factorization.py::fold_in`.
Random item factors (100,000 x 64 by default), one BLAS thread as the service runs it.

    python benchmarks/fold_in.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

ROUNDS = 3  # the median of these rounds, each the mean over every history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--lengths", default="10,50,200", help="comma-separated history lengths")
    parser.add_argument("--users", type=int, default=200, help="histories of each length")
    args = parser.parse_args(argv)

    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    from benchmarks.answer_search import per_query_ms
    from features.factorization import fold_in, item_gram
    from features.schemas import ALSConfig

    rng = np.random.default_rng(0)
    items = rng.normal(scale=0.1, size=(args.items, args.factors)).astype(np.float32)
    config = ALSConfig(factors=args.factors)
    gram = item_gram(items)
    print(f"{args.items:,} items x {args.factors} factors, one BLAS thread, implicit on one thread")
    print(f"{'history':>8} {'implicit ms':>12} {'recqa ms':>10} {'x implicit':>11} {'max rel diff':>13}")
    with threadpool_limits(1, "blas"):
        # one thread: implicit's default (0) starts an OpenMP pool over every core for each user
        model = AlternatingLeastSquares(factors=args.factors, regularization=config.regularization, alpha=config.alpha, num_threads=1)
        model.item_factors, model.user_factors = items, np.zeros((1, args.factors), np.float32)
        for length in (int(n) for n in args.lengths.split(",")):
            weights = np.ones(length)
            users = []  # (a history as item rows, the same history as implicit's user row)
            for _ in range(args.users):
                history = rng.choice(args.items, length, replace=False)
                users.append((history, csr_matrix((weights.astype(np.float32), (np.zeros(length, int), history)), shape=(1, args.items))))
            raw = per_query_ms(lambda user: model.recalculate_user(0, user[1]), users, ROUNDS)
            ours = per_query_ms(lambda user: fold_in(items, user[0], weights, config, gram), users, ROUNDS)
            diff = max(_relative(fold_in(items, history, weights, config, gram), model.recalculate_user(0, row)) for history, row in users[:20])
            print(f"{length:>8} {raw:>12.3f} {ours:>10.3f} {ours / raw:>10.2f}x {diff:>13.2e}")


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest difference over the vector's length."""
    return float(np.abs(ours - theirs).max() / max(np.linalg.norm(theirs), 1e-12))


if __name__ == "__main__":
    main()
