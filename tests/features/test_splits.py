"""Split invariants: train and test partition the input, and no test item leaks into training."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from features.schemas import Interaction
from features.splits import random_split, temporal_split


def _events(seed: int = 0, users: int = 40, items: int = 30, count: int = 600) -> list[Interaction]:
    rng = random.Random(seed)
    return [
        Interaction(f"u{rng.randrange(users)}", f"i{rng.randrange(items)}", float(rng.randrange(10_000)), "purchase")
        for _ in range(count)
    ]


def _assert_partition_without_leaks(events, split):
    assert Counter(split.train) + Counter(split.test) == Counter(events)
    train = split.train_items()
    for user_id, held in split.test_items().items():
        assert not held & train.get(user_id, set()), f"{user_id} has test items in training"
        assert train.get(user_id), f"{user_id} kept nothing to train on"


@pytest.mark.parametrize("make", [lambda e: temporal_split(e, 2), lambda e: random_split(e, 0.3, seed=5)])
def test_train_and_test_partition_the_input_with_no_leak(make):
    events = _events()
    split = make(events)
    assert split.test
    _assert_partition_without_leaks(events, split)


def test_temporal_split_holds_out_each_users_latest_items_with_all_their_events():
    events = [
        Interaction("u", "old", 1.0), Interaction("u", "mid", 2.0), Interaction("u", "new", 3.0),
        Interaction("u", "old", 4.0),  # touched again last: "old" is now the latest item
        Interaction("v", "only", 1.0),  # one item: nothing to hold out
    ]
    split = temporal_split(events, last_n=1)
    assert split.test_items() == {"u": {"old"}}
    assert sorted(e.timestamp for e in split.test) == [1.0, 4.0]
    assert split.train_items() == {"u": {"mid", "new"}, "v": {"only"}}


def test_random_split_is_seeded_and_keeps_the_fraction():
    events = _events(seed=1)
    first, again, other = random_split(events, 0.25, seed=3), random_split(list(reversed(events)), 0.25, seed=3), random_split(events, 0.25, seed=4)
    assert first.test_items() == again.test_items()  # same seed, same split, whatever the input order
    assert first.test_items() != other.test_items()
    for user_id, held in first.test_items().items():
        distinct = len(held) + len(first.train_items()[user_id])
        assert len(held) == min(distinct - 1, max(1, round(0.25 * distinct)))


def test_validation_is_carved_from_train_only():
    events = _events(seed=2)
    outer = temporal_split(events, 1)
    inner = temporal_split(outer.train, 1)
    _assert_partition_without_leaks(outer.train, inner)
    test_events = set(outer.test)
    assert not test_events & set(inner.train) and not test_events & set(inner.test)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="last_n"):
        temporal_split([], 0)
    with pytest.raises(ValueError, match="fraction"):
        random_split([], 1.0)
