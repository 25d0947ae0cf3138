"""Per-user train/test splits of interaction events, for offline evaluation.

A split holds out whole (user, item) pairs: every event of a held-out pair goes to test, so
no test item of a user leaks into that user's training events, and train and test together
are exactly the input. Users with too few distinct items keep everything in train.
Hyperparameters are tuned on a validation split made by splitting the train part again.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from features.schemas import Interaction


@dataclass(frozen=True)
class Split:
    train: list[Interaction]
    test: list[Interaction]

    def test_items(self) -> dict[str, set[str]]:
        """user_id -> the items held out for them."""
        held: dict[str, set[str]] = defaultdict(set)
        for event in self.test:
            held[event.user_id].add(event.item_id)
        return dict(held)

    def train_items(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = defaultdict(set)
        for event in self.train:
            seen[event.user_id].add(event.item_id)
        return dict(seen)


def _by_user(events: Sequence[Interaction]) -> dict[str, list[Interaction]]:
    grouped: dict[str, list[Interaction]] = defaultdict(list)
    for event in events:
        grouped[event.user_id].append(event)
    return grouped


def _partition(events: Sequence[Interaction], held: dict[str, set[str]]) -> Split:
    train = [e for e in events if e.item_id not in held.get(e.user_id, ())]
    test = [e for e in events if e.item_id in held.get(e.user_id, ())]
    return Split(train, test)


def temporal_split(events: Sequence[Interaction], last_n: int = 1) -> Split:
    """Per user, the `last_n` items touched most recently go to test (leave-last-n-out).

    An item's time is its latest event; ties break by item id, so the split is deterministic.
    A user needs at least `last_n + 1` distinct items to give any to test.
    """
    if last_n < 1:
        raise ValueError(f"last_n must be >= 1, got {last_n}")
    held: dict[str, set[str]] = {}
    for user_id, user_events in _by_user(events).items():
        latest: dict[str, float] = {}
        for event in user_events:
            latest[event.item_id] = max(latest.get(event.item_id, float("-inf")), event.timestamp)
        if len(latest) > last_n:
            order = sorted(latest, key=lambda item: (latest[item], item))
            held[user_id] = set(order[-last_n:])
    return _partition(events, held)


def random_split(events: Sequence[Interaction], fraction: float = 0.2, seed: int = 0) -> Split:
    """Per user, a random `fraction` of their distinct items (at least one) goes to test.

    A user needs at least two distinct items to give any to test, and always keeps one.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = random.Random(seed)
    held: dict[str, set[str]] = {}
    grouped = _by_user(events)
    for user_id in sorted(grouped):  # sorted: the same seed gives the same split whatever the input order
        items = sorted({e.item_id for e in grouped[user_id]})
        if len(items) < 2:
            continue
        count = min(len(items) - 1, max(1, round(fraction * len(items))))
        held[user_id] = set(rng.sample(items, count))
    return _partition(events, held)
