"""Raw events -> (user_idx, item_idx, weight): vocabularies, event weights, the CSR matrix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from features.schemas import Interaction

# Stronger signals count more. Events outside this mapping are refused at the boundary.
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0}
DEFAULT_EVENT = "purchase"


def build_vocabulary(ids: Iterable[str]) -> dict[str, int]:
    """Id -> dense index, sorted so the same input always gives the same indices."""
    return {identifier: index for index, identifier in enumerate(sorted(set(ids)))}


def event_weight(interaction: Interaction, weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS) -> float:
    """Confidence weight of one event: its event weight, times `value` where one is given."""
    base = weights[interaction.event or DEFAULT_EVENT]  # adapters refuse unknown events
    return base * (interaction.value if interaction.value is not None else 1.0)


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


def build_matrix(
    interactions: Sequence[Interaction],
    item_ids: Iterable[str] = (),
    weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS,
) -> InteractionMatrix:
    """The confidence matrix of the interactions.

    `item_ids` adds catalogue items nobody interacted with, so they get a column (and a row
    in the items table) even though ALS learns nothing for them.
    """
    user_vocab = build_vocabulary(i.user_id for i in interactions)
    item_vocab = build_vocabulary([*(i.item_id for i in interactions), *item_ids])
    rows = np.fromiter((user_vocab[i.user_id] for i in interactions), dtype=np.int32, count=len(interactions))
    cols = np.fromiter((item_vocab[i.item_id] for i in interactions), dtype=np.int32, count=len(interactions))
    data = np.fromiter((event_weight(i, weights) for i in interactions), dtype=np.float32, count=len(interactions))
    matrix = csr_matrix((data, (rows, cols)), shape=(len(user_vocab), len(item_vocab)), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()  # a zero-weight event is no signal: neither seen nor popular
    return InteractionMatrix(user_ids=list(user_vocab), item_ids=list(item_vocab), matrix=matrix)
