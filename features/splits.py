"""Per-user train/test splits of interaction events, for offline evaluation.

A split holds out whole (user, item) pairs: every event of a held-out pair goes to test, so
no test item of a user leaks into that user's training events, and train and test together
are exactly the input. Users with too few distinct items keep everything in train (except in
a split the user supplies as pairs, which is taken as given).
Hyperparameters are tuned on a validation split made by splitting the train part again.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from features.errors import InputError
from features.schemas import Interaction

MISSING_PAIR_EXAMPLES = 5  # how many absent pairs an error quotes


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


def _items_by_time(user_events: Sequence[Interaction]) -> list[str]:
    """A user's distinct items, oldest first: an item's time is its latest event, ties by item id."""
    latest: dict[str, float] = {}
    for event in user_events:
        latest[event.item_id] = max(latest.get(event.item_id, float("-inf")), event.timestamp)
    return sorted(latest, key=lambda item: (latest[item], item))


def _held_count(distinct: int, fraction: float) -> int:
    """How many of a user's `distinct` items a `fraction` holds out: at least one, never all."""
    return min(distinct - 1, max(1, round(fraction * distinct))) if distinct >= 2 else 0


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")


def temporal_split(events: Sequence[Interaction], last_n: int = 1) -> Split:
    """Per user, the `last_n` items touched most recently go to test (leave-last-n-out).

    An item's time is its latest event; ties break by item id, so the split is deterministic.
    A user needs at least `last_n + 1` distinct items to give any to test.
    """
    if last_n < 1:
        raise ValueError(f"last_n must be >= 1, got {last_n}")
    held: dict[str, set[str]] = {}
    for user_id, user_events in _by_user(events).items():
        order = _items_by_time(user_events)
        if len(order) > last_n:
            held[user_id] = set(order[-last_n:])
    return _partition(events, held)


def temporal_fraction_split(events: Sequence[Interaction], fraction: float = 0.2) -> Split:
    """Per user, the most recent `fraction` of their distinct items goes to test.

    The share is counted in items, as `random_split` counts it: round(fraction x distinct
    items), at least one and never all, so a user with two or more items always gives one
    to test and a user with a single item keeps it in train. Items are timed and ties broken
    as in `temporal_split`, so the split is deterministic whatever the input order.
    """
    _check_fraction(fraction)
    held: dict[str, set[str]] = {}
    for user_id, user_events in _by_user(events).items():
        order = _items_by_time(user_events)
        if count := _held_count(len(order), fraction):
            held[user_id] = set(order[-count:])
    return _partition(events, held)


def split_from_pairs(events: Sequence[Interaction], held: Iterable[tuple[str, str]]) -> Split:
    """The split a user supplies: every event of a held-out (user_id, item_id) pair goes to test.

    A held pair with no event in `events` is refused rather than dropped, since it nearly
    always means the pairs and the events disagree on ids (another file, another id scheme)
    and the figures would silently measure fewer users. The InputError names how many pairs
    are absent and the first few, sorted. A user may give all their items to test; they then
    have nothing to train on and are ranked as a stranger would be.
    """
    held_pairs = set(held)
    present = {(e.user_id, e.item_id) for e in events}
    if missing := sorted(held_pairs - present):
        examples = ", ".join(f"({u!r}, {i!r})" for u, i in missing[:MISSING_PAIR_EXAMPLES])
        raise InputError(
            f"{len(missing)} of {len(held_pairs)} held-out pairs have no event among the {len(events)} interactions, "
            f"e.g. {examples}",
            field="held-out pairs",
        )
    by_user: dict[str, set[str]] = defaultdict(set)
    for user_id, item_id in held_pairs:
        by_user[user_id].add(item_id)
    return _partition(events, dict(by_user))


def random_split(events: Sequence[Interaction], fraction: float = 0.2, seed: int = 0) -> Split:
    """Per user, a random `fraction` of their distinct items (at least one) goes to test.

    A user needs at least two distinct items to give any to test, and always keeps one.
    """
    _check_fraction(fraction)
    rng = random.Random(seed)
    held: dict[str, set[str]] = {}
    grouped = _by_user(events)
    for user_id in sorted(grouped):  # sorted: the same seed gives the same split whatever the input order
        items = sorted({e.item_id for e in grouped[user_id]})
        if count := _held_count(len(items), fraction):
            held[user_id] = set(rng.sample(items, count))
    return _partition(events, held)


@dataclass(frozen=True)
class SplitSpec:
    """How a split is made, as `recqa tune recs` and `recqa evaluate recs` both take it from flags.

    One definition, so the validation split tuning carves from the training part and the test
    split evaluation scores are the same split, and a candidate tuned on one can be checked
    against the split it is evaluated on.
    """

    kind: str = "temporal"  # temporal | random
    last_n: int = 1  # temporal: items held out per user, unless `fraction` is set
    fraction: float | None = None  # temporal: each user's last share by time; random: share (default 0.2)
    seed: int = 0  # random only

    def apply(self, events: Sequence[Interaction]) -> Split:
        if self.kind == "temporal":
            return temporal_fraction_split(events, self.fraction) if self.fraction is not None else temporal_split(events, self.last_n)
        if self.kind == "random":
            return random_split(events, 0.2 if self.fraction is None else self.fraction, self.seed)
        raise InputError(f"unknown split '{self.kind}'; expected temporal or random", field="--split")

    def described(self) -> dict:
        """What identifies the split (the seed only where it matters)."""
        by = {"last_n": self.last_n} if self.kind == "temporal" and self.fraction is None else {"fraction": self.fraction if self.fraction is not None else 0.2}
        return {"kind": self.kind, **by, **({"seed": self.seed} if self.kind == "random" else {})}
