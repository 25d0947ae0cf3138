"""Split invariants: train and test partition the input, and no test item leaks into training."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from features.errors import InputError
from features.schemas import Interaction
from features.splits import random_split, split_from_pairs, temporal_fraction_split, temporal_split


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


def _some_pairs(events, every: int = 7) -> set[tuple[str, str]]:
    """Every `every`-th distinct pair, keeping one item back for each user."""
    pairs = sorted({(e.user_id, e.item_id) for e in events})
    first = {}
    for user_id, item_id in pairs:
        first.setdefault(user_id, item_id)
    return {p for p in pairs[::every] if first[p[0]] != p[1]}


@pytest.mark.parametrize(
    "make",
    [
        lambda e: temporal_split(e, 2),
        lambda e: random_split(e, 0.3, seed=5),
        lambda e: temporal_fraction_split(e, 0.3),
        lambda e: split_from_pairs(e, _some_pairs(e)),
    ],
    ids=["temporal", "random", "temporal_fraction", "from_pairs"],
)
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


def test_temporal_fraction_split_holds_out_each_users_latest_share():
    events = [
        *(Interaction("u", f"i{n}", float(n)) for n in range(10)),
        Interaction("u", "i0", 20.0),  # touched again last: i0 is now the latest item
        Interaction("v", "a", 1.0), Interaction("v", "b", 1.0),  # a tie: broken by item id
        Interaction("w", "only", 1.0), Interaction("w", "only", 2.0),  # one item: stays in train
    ]
    split = temporal_fraction_split(events, 0.3)
    assert split.test_items() == {"u": {"i0", "i9", "i8"}, "v": {"b"}}
    assert sorted(e.timestamp for e in split.test if e.item_id == "i0") == [0.0, 20.0]
    assert split.train_items()["w"] == {"only"}
    assert Counter(split.train) + Counter(split.test) == Counter(events)


def test_temporal_fraction_split_keeps_the_fraction_and_ignores_input_order():
    events = _events(seed=3)
    split = temporal_fraction_split(events, 0.25)
    assert split.test_items() == temporal_fraction_split(list(reversed(events)), 0.25).test_items()
    for user_id, items in split.train_items().items():
        held = split.test_items().get(user_id, set())
        distinct = len(items) + len(held)
        assert len(held) == (min(distinct - 1, max(1, round(0.25 * distinct))) if distinct >= 2 else 0)
        latest = {i: max(e.timestamp for e in events if e.user_id == user_id and e.item_id == i) for i in items | held}
        assert all(latest[h] >= latest[i] for h in held for i in items)  # nothing kept is newer than a held item


def test_split_from_pairs_holds_out_every_event_of_each_pair():
    events = [Interaction("u", "a", 1.0), Interaction("u", "b", 2.0), Interaction("u", "a", 3.0), Interaction("v", "a", 4.0)]
    split = split_from_pairs(events, {("u", "a")})
    assert split.test == [events[0], events[2]]
    assert split.train == [events[1], events[3]]


def test_split_from_pairs_refuses_pairs_without_events_naming_them():
    events = [Interaction("u", "a", 1.0), Interaction("u", "b", 2.0)]
    held = {("u", "a"), ("u", "zz"), ("x", "a"), *((f"w{n}", "a") for n in range(6))}
    with pytest.raises(InputError, match=r"8 of 9 held-out pairs have no event") as error:
        split_from_pairs(events, held)
    assert error.value.field == "held-out pairs"
    assert str(error.value).endswith("e.g. ('u', 'zz'), ('w0', 'a'), ('w1', 'a'), ('w2', 'a'), ('w3', 'a')")  # first five, sorted


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="last_n"):
        temporal_split([], 0)
    with pytest.raises(ValueError, match="fraction"):
        random_split([], 1.0)
    with pytest.raises(ValueError, match="fraction"):
        temporal_fraction_split([], 0.0)
