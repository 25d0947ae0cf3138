"""`RecommenderCore.with_changes` against the definition it shortcuts: a core built from the
base's rows with the same changes applied, item by item (what the follower built at every
step before). Random catalogues with ties everywhere (cold items, equal popularity, shared
categories) and random changes must give the same answers from both."""

from __future__ import annotations

import random

import numpy as np
import pytest

from features.ranking import RecommenderCore
from features.schemas import ALSConfig

CATEGORIES = ["a", "b", None]


def random_core(rng: random.Random, items: int, users: int) -> RecommenderCore:
    item_ids = [f"i{rng.randrange(10 * items):04d}" for _ in range(items)]
    item_ids = list(dict.fromkeys(item_ids))
    rng.shuffle(item_ids)  # any row order: the core sorts by id
    vectors = np.array([[0.0, 0.0, 0.0] if rng.random() < 0.3 else [rng.choice([0.5, 1.0]), rng.random(), rng.choice([0.0, 1.0])]
                        for _ in item_ids], np.float32)
    return RecommenderCore(
        user_ids=[f"u{u}" for u in range(users)],
        user_vectors=np.array([[rng.random(), rng.random(), 0.5] for _ in range(users)], np.float32),
        user_seen=[rng.sample(item_ids, rng.randrange(0, 4)) for _ in range(users)],
        item_ids=item_ids,
        item_vectors=vectors,
        popularity=[rng.choice([0, 0, 1, 2, 5]) for _ in item_ids],
        categories=[rng.choice(CATEGORIES) for _ in item_ids],
        titles=[f"title {i}" for i in item_ids],
        als=ALSConfig(factors=3, regularization=0.1),
    )


def rebuilt(base: RecommenderCore, dropped_items, updated, dropped_users, added) -> RecommenderCore:
    """The definition: the base's rows with the changes applied one by one, built anew."""
    rows = base.rows()
    keep = [i for i, item_id in enumerate(rows["item_ids"]) if item_id not in dropped_items or item_id in updated]
    new = [item_id for item_id in updated if not base.has_item(item_id)]
    titles = [updated[rows["item_ids"][i]][0] if rows["item_ids"][i] in updated else rows["titles"][i] for i in keep]
    categories = [updated[rows["item_ids"][i]][1] if rows["item_ids"][i] in updated else rows["categories"][i] for i in keep]
    kept_users = [i for i, user_id in enumerate(rows["user_ids"]) if user_id not in dropped_users and user_id not in added]
    return RecommenderCore(
        user_ids=[rows["user_ids"][i] for i in kept_users] + list(added),
        user_vectors=np.concatenate([rows["user_vectors"][kept_users], np.array([v for v, _ in added.values()], np.float32).reshape(-1, 3)]),
        user_seen=[rows["user_seen"][i] for i in kept_users] + [list(seen) for _, seen in added.values()],
        item_ids=[rows["item_ids"][i] for i in keep] + new,
        item_vectors=np.concatenate([rows["item_vectors"][keep], np.zeros((len(new), 3), np.float32)]),
        popularity=[rows["popularity"][i] for i in keep] + [0] * len(new),
        categories=categories + [updated[i][1] for i in new],
        titles=titles + [updated[i][0] for i in new],
        als=rows["als"],
    )


def random_changes(rng: random.Random, base: RecommenderCore):
    items = base.rows()["item_ids"]
    users = base.rows()["user_ids"]
    dropped_items = set(rng.sample(items, min(len(items), rng.randrange(0, 6)))) | {"i-never-there"}
    updated = {item_id: (f"new {item_id}", rng.choice(CATEGORIES + ["c-new"]))
               for item_id in rng.sample(items, min(len(items), rng.randrange(0, 4))) + [f"i{rng.randrange(10000):04d}n" for _ in range(rng.randrange(0, 5))]}
    dropped_users = set(rng.sample(users, min(len(users), rng.randrange(0, 3)))) | {"u-never-there"}
    added = {user_id: (np.array([rng.random(), 1.0, rng.random()], np.float32), rng.sample(items, 2))
             for user_id in rng.sample(users, min(len(users), rng.randrange(0, 3))) + [f"new-user-{rng.randrange(3)}"]}
    return dropped_items, updated, dropped_users, added


def assert_same(changed: RecommenderCore, expected: RecommenderCore, users: list[str], probes: list[str]) -> None:
    rows, want = changed.rows(), expected.rows()
    if changed._popular_order is not None:  # carried over from the base: the whole order, not only its top
        np.testing.assert_array_equal(changed._popular_order, np.argsort(-changed._counts, kind="stable"))
    assert rows["item_ids"] == want["item_ids"]
    assert rows["titles"] == want["titles"] and rows["categories"] == want["categories"] and rows["popularity"] == want["popularity"]
    np.testing.assert_array_equal(rows["item_vectors"], want["item_vectors"])
    assert sorted(rows["user_ids"]) == sorted(want["user_ids"])
    for item_id in probes:
        assert changed.has_item(item_id) == expected.has_item(item_id), item_id
        assert (changed.title(item_id), changed.category(item_id), changed.popularity(item_id)) == \
            (expected.title(item_id), expected.category(item_id), expected.popularity(item_id))
        if expected.has_item(item_id):
            assert changed.is_cold(item_id) == expected.is_cold(item_id)
            assert changed.similar_by_behaviour(item_id, 4) == expected.similar_by_behaviour(item_id, 4)
    for categories in (None, ["a"], ["b", None], ["c-new"], ["nowhere"]):
        assert changed.popular(6, categories, exclude_ids=probes[:1]) == expected.popular(6, categories, exclude_ids=probes[:1])
        for user_id in users:
            assert changed.has_user(user_id) == expected.has_user(user_id)
            assert changed.seen(user_id) == expected.seen(user_id)
            got = changed.for_user(user_id, 5, categories=categories, recent_item_ids=probes[1:2], exclude_ids=probes[2:3])
            assert got == expected.for_user(user_id, 5, categories=categories, recent_item_ids=probes[1:2], exclude_ids=probes[2:3])
            listed = [item_id for item_id, _ in got.items]
            assert changed.reasons(got.known, listed) == expected.reasons(got.known, listed)


@pytest.mark.parametrize("seed", range(25))
def test_a_changed_core_answers_as_the_core_rebuilt_with_the_changes(seed):
    rng = random.Random(seed)
    base = random_core(rng, items=rng.randrange(1, 40), users=rng.randrange(1, 8))
    pristine = rebuilt(base, set(), {}, set(), {})  # copies of everything the base holds now
    base.warm()  # a base whose YᵀY and popular order are made must not lend them to a changed catalogue
    dropped_items, updated, dropped_users, added = random_changes(rng, base)
    changed = base.with_changes(dropped_items, updated, dropped_users, added)
    expected = rebuilt(base, dropped_items, updated, dropped_users, added)
    probes = [*updated, *dropped_items, *rng.sample(base.rows()["item_ids"], min(5, len(base.rows()["item_ids"])))]
    users = [*base.rows()["user_ids"], *added, *dropped_users]
    assert_same(changed, expected, users, probes)
    # the base is left as it was: requests holding it keep their view
    assert_same(base, pristine, users, probes)


def test_no_changes_share_the_bases_arrays():
    base = random_core(random.Random(1), items=30, users=5)
    changed = base.with_changes()
    assert changed._item_vectors is base._item_vectors and changed._user_index is base._user_index
    assert changed.rows()["item_ids"] == base.rows()["item_ids"]


def test_retitling_alone_leaves_the_base_as_it_was():
    base = random_core(random.Random(3), items=20, users=3)
    pristine = rebuilt(base, set(), {}, set(), {})
    item = base.rows()["item_ids"][0]
    changed = base.with_changes(updated_items={item: ("retitled", "c-new")})
    assert (changed.title(item), changed.category(item)) == ("retitled", "c-new")
    assert changed._item_vectors is base._item_vectors and changed._gram is base._gram
    users = base.rows()["user_ids"]
    assert_same(base, pristine, users, [item])
    assert_same(changed, rebuilt(base, set(), {item: ("retitled", "c-new")}, set(), {}), users, [item])


def test_reasons_name_for_each_item_the_seen_item_closest_by_factors():
    rng = random.Random(7)
    core = random_core(rng, items=40, users=2)
    rows = core.rows()
    vectors = dict(zip(rows["item_ids"], rows["item_vectors"]))
    warm = [i for i in rows["item_ids"] if not core.is_cold(i)]  # cold items tie at 0 with every seen item
    seen, listed = warm[:4], warm[10:20]
    expected = [max(seen, key=lambda s: (float(vectors[s] @ vectors[i]), -seen.index(s))) for i in listed]
    assert core.reasons([*seen, "i-never-there"], listed) == expected  # unknown seen ids are skipped
    assert core.reasons(["i-never-there"], listed) == [None] * len(listed)


def test_an_empty_catalogue_takes_new_items_as_cold_ones_in_id_order():
    empty = RecommenderCore(user_ids=[], user_vectors=np.zeros((0, 0), np.float32), user_seen=[], item_ids=[],
                            item_vectors=np.zeros((0, 0), np.float32), popularity=[], categories=[], titles=[],
                            als=ALSConfig(factors=3, regularization=0.1))
    empty.warm()
    changed = empty.with_changes(updated_items={"b": ("B", "x"), "a": ("A", None)})
    assert changed.rows()["item_ids"] == ["a", "b"] and changed.rows()["titles"] == ["A", "B"]
    assert changed._popular_order.tolist() == [0, 1]  # carried over from the empty base's, not made anew
    assert changed.popular(5) == [("a", 0.0), ("b", 0.0)] and changed.popular(5, ["x"]) == [("b", 0.0)]
    assert changed.is_cold("a") and changed.popularity("b") == 0


def test_the_popular_order_carried_over_keeps_count_blocks_whatever_their_sign():
    # counts are distinct users (never negative from a build), but the order must not depend on it
    core = RecommenderCore(user_ids=[], user_vectors=np.zeros((0, 0), np.float32), user_seen=[],
                           item_ids=["a", "c", "e", "g"], item_vectors=np.ones((4, 3), np.float32),
                           popularity=[0, -1, 2, 0], categories=[None] * 4, titles=[None] * 4, als=ALSConfig(factors=3))
    core.warm()
    changed = core.with_changes(dropped_items=["a"], updated_items={"b": ("B", None), "h": ("H", None)})
    assert changed.rows()["item_ids"] == ["b", "c", "e", "g", "h"]
    assert [changed.rows()["item_ids"][i] for i in changed._popular_order] == ["e", "b", "g", "h", "c"]
