"""Raw events -> (user_idx, item_idx, weight): vocabularies, event weights, decay, the CSR matrix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix

from features.schemas import Interaction

# Stronger signals count more. Events outside the mapping are refused at the boundary.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0}
DEFAULT_EVENT = "purchase"
SECONDS_PER_DAY = 86_400.0
# k-core filtering converges in a few rounds on real data; the cap bounds pathological inputs.
_MAX_FILTER_ROUNDS = 20


@dataclass(frozen=True)
class WeightConfig:
    """How events become confidences: per-event weights, time decay, minimum support."""

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None  # None: no decay
    min_user_interactions: int = 1  # distinct items per user
    min_item_interactions: int = 1  # distinct users per item


def build_vocabulary(ids: Iterable[str]) -> dict[str, int]:
    """Id -> dense index, sorted so the same input always gives the same indices."""
    return {identifier: index for index, identifier in enumerate(sorted(set(ids)))}


def event_weight(interaction: Interaction, weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS) -> float:
    """Confidence weight of one event: its event weight, times `value` where one is given."""
    base = weights[interaction.event or DEFAULT_EVENT]
    return base * (interaction.value if interaction.value is not None else 1.0)


def decay_factors(timestamps: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """0.5 ** (age / half-life), the age measured from the newest event of the input.

    Measuring from the newest event (not the wall clock) makes a rerun on the same data
    give the same weights.
    """
    if half_life_days is None or len(timestamps) == 0:
        return np.ones(len(timestamps), dtype=np.float64)
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    age_days = (timestamps.max() - timestamps) / SECONDS_PER_DAY
    return np.power(0.5, age_days / half_life_days)


@dataclass(frozen=True)
class InteractionMatrix:
    """A user x item confidence matrix with the vocabularies that name its rows and columns."""

    user_ids: list[str]
    item_ids: list[str]
    matrix: csr_matrix  # float32, users x items; repeated events add up

    def seen_item_ids(self, user_idx: int) -> list[str]:
        """Item ids the user has interacted with, in column order."""
        row = self.matrix.indices[self.matrix.indptr[user_idx] : self.matrix.indptr[user_idx + 1]]
        return [self.item_ids[i] for i in sorted(row)]

    def item_popularity(self) -> np.ndarray:
        """Distinct users per item: the cold-start ranking and a report baseline."""
        return np.diff(self.matrix.tocsc().indptr).astype(np.int64)


def _core_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Which (distinct) pairs survive repeated min-support filtering of users and items."""
    keep = np.ones(len(users), dtype=bool)
    for _ in range(_MAX_FILTER_ROUNDS):
        user_counts = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_counts = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new_keep = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        if (new_keep == keep).all():
            break
        keep = new_keep
    return keep


def build_matrix(
    interactions: Sequence[Interaction], item_ids: Iterable[str] = (), config: WeightConfig = WeightConfig()
) -> InteractionMatrix:
    """The confidence matrix of the interactions.

    `item_ids` adds catalogue items nobody interacted with, so they get a column (and a row
    in the items table) even though ALS learns nothing for them; items below the minimum
    support keep their column too (cold items). Users below it are left out.
    """
    user_vocab = build_vocabulary(i.user_id for i in interactions)
    item_vocab = build_vocabulary([*(i.item_id for i in interactions), *item_ids])
    n = len(interactions)
    rows = np.fromiter((user_vocab[i.user_id] for i in interactions), dtype=np.int64, count=n)
    cols = np.fromiter((item_vocab[i.item_id] for i in interactions), dtype=np.int64, count=n)
    weights = np.fromiter((event_weight(i, config.event_weights) for i in interactions), dtype=np.float64, count=n)
    times = np.fromiter((i.timestamp for i in interactions), dtype=np.float64, count=n)
    weights *= decay_factors(times, config.half_life_days)
    if config.min_user_interactions > 1 or config.min_item_interactions > 1:
        pairs = np.unique(np.stack([rows, cols], axis=1), axis=0)
        kept = pairs[_core_mask(pairs[:, 0], pairs[:, 1], config.min_user_interactions, config.min_item_interactions)]
        kept_keys = set(map(tuple, kept.tolist()))
        mask = np.fromiter(((r, c) in kept_keys for r, c in zip(rows.tolist(), cols.tolist())), dtype=bool, count=n)
        kept_users = np.unique(rows[mask])
        remap = np.full(len(user_vocab), -1, dtype=np.int64)
        remap[kept_users] = np.arange(len(kept_users))
        user_names = list(user_vocab)
        user_vocab = {user_names[u]: i for i, u in enumerate(kept_users.tolist())}
        rows, cols, weights = remap[rows[mask]], cols[mask], weights[mask]
    matrix = csr_matrix((weights.astype(np.float32), (rows, cols)), shape=(len(user_vocab), len(item_vocab)), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()  # a zero-weight event is no signal: neither seen nor popular
    return InteractionMatrix(user_ids=list(user_vocab), item_ids=list(item_vocab), matrix=matrix)
