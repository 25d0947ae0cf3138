"""One contract suite over every ranker, the served one included (STYLE habits 5 and 11).

A checkerboard with an obvious right answer: two user groups by two item groups; each user
saw all but MISSED items of their own group and nothing of the other, and two catalogue
items nobody touched. The right recommendations are a user's unseen own-group items first;
popularity, which knows no groups, must give the unseen items by distinct users.

Every ranker is seen through evaluation's interface, ranker(user rows, k) -> item rows:
the baselines as they are, ALS through `RecommenderCore.from_fit` (what evaluation ranks
with) and through the served `Recommender` over real Lance tables written as build-recs
writes them (what the service answers with).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable

import numpy as np
import pytest

from evaluation.recs import bpr, item_knn, popularity
from features.factorization import Factors, fit_als
from features.interactions import InteractionMatrix, build_matrix
from features.ranking import RecommenderCore
from features.schemas import (
    ITEMS_TABLE,
    META_ALS,
    META_FIT,
    USERS_TABLE,
    ALSConfig,
    Interaction,
    TableMetadata,
    items_schema,
    users_schema,
)
from tests.conftest import FakeEncoder

GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP, MISSED = 2, 12, 8, 3
COLD_ITEMS = [f"i{GROUPS}{n}" for n in range(2)]  # catalogue items nobody touched: a group of no user
ALL_UNSEEN = GROUPS * ITEMS_PER_GROUP + len(COLD_ITEMS) - (ITEMS_PER_GROUP - MISSED)  # what each user has left
# Strong regularisation: with more factors than the two groups need, a weak one lets ALS learn
# each user's window instead of their group (checked over ten seeds).
ALS = ALSConfig(factors=4, regularization=2.0, alpha=2.0, iterations=15, random_state=0)
Ranker = Callable[[np.ndarray, int], list[list[int]]]


def _group(identifier: str) -> int:
    return int(identifier[1])  # u<group><n> and i<group><n>


def checkerboard() -> list[Interaction]:
    """User n of group g saw the items of group g except MISSED of them, a window that moves with n.

    One `purchase` event per pair, so each matrix cell is what fold-in counts an item as.
    """
    return [
        Interaction(f"u{g}{n:02d}", f"i{g}{j}", float(100 * n + j))
        for g in range(GROUPS)
        for n in range(USERS_PER_GROUP)
        for j in range(ITEMS_PER_GROUP)
        if (j - n) % ITEMS_PER_GROUP >= MISSED
    ]


@pytest.fixture(scope="module")
def matrix() -> InteractionMatrix:
    return build_matrix(checkerboard(), item_ids=COLD_ITEMS)


def write_like_build_recs(warehouse: str, matrix: InteractionMatrix, factors: Factors, als: ALSConfig, encoder: FakeEncoder) -> None:
    """The users and items tables of one fit, with the rows and metadata build-recs commits.

    Rows come from build-recs' own row functions. The job leaves items in no
    particular order; here they are written in reverse, so that any dependence on row order
    shows (every tie is flipped).
    """
    from pipelines import lance_io
    from pipelines.transforms.recs import TrainedModel, item_factors, item_row, merge_item, user_rows

    model = TrainedModel(matrix=matrix, factors=factors)
    content = encoder.encode([""])[0]
    items = [  # no catalogue entry: titled by id, no category, as from_fit assumes
        item_row(merge_item((item_id, {"catalogue": [], "factors": [learnt]})), content)
        for item_id, learnt in item_factors(model)
    ]
    items.reverse()
    als_meta = {META_ALS: json.dumps(dataclasses.asdict(als)).encode(), META_FIT: uuid.uuid4().hex.encode()}
    item_meta = {**TableMetadata(encoder.name, encoder.dimension).to_arrow(), **als_meta}
    lance_io.write_table(warehouse, ITEMS_TABLE, lance_io.to_arrow(items, items_schema(als.factors, encoder.dimension)), item_meta)
    lance_io.write_table(warehouse, USERS_TABLE, lance_io.to_arrow(user_rows(model), users_schema(als.factors)), als_meta)


def served_recommender(warehouse: str, matrix: InteractionMatrix, factors: Factors) -> RecommenderCore:
    """The served Recommender over fresh Lance tables of this fit."""
    import lancedb

    from serving.recommender import Recommender

    encoder = FakeEncoder("fake-encoder", 8)
    write_like_build_recs(warehouse, matrix, factors, ALS, encoder)
    db = lancedb.connect(warehouse)
    return Recommender(db.open_table(USERS_TABLE), db.open_table(ITEMS_TABLE), encoder)


@pytest.fixture(scope="module")
def fit(matrix) -> Factors:
    return fit_als(matrix.matrix, ALS)


@pytest.fixture(scope="module")
def core(matrix, fit) -> RecommenderCore:
    """What evaluation ranks ALS with: the core a build-recs run of this fit would serve."""
    return RecommenderCore.from_fit(matrix, fit, ALS)


@pytest.fixture(scope="module")
def served(tmp_path_factory, matrix, fit):
    """What the service ranks with: the same fit, through Lance tables."""
    return served_recommender(str(tmp_path_factory.mktemp("warehouse")), matrix, fit)


def core_ranker(core: RecommenderCore, matrix: InteractionMatrix) -> Ranker:
    """A RecommenderCore (or the served Recommender) behind evaluation's ranker interface."""
    item_index = {item_id: i for i, item_id in enumerate(matrix.item_ids)}

    def rank(users: np.ndarray, k: int) -> list[list[int]]:
        return [[item_index[i] for i, _ in core.for_user(matrix.user_ids[u], k).items] for u in users]

    return rank


# name -> (build a ranker from the matrix and the module's fixtures, personalised?)
RANKERS: dict[str, tuple[Callable[..., Ranker], bool]] = {
    "als_core": (lambda m, request: core_ranker(RecommenderCore.from_fit(m, fit_als(m.matrix, ALS), ALS), m), True),
    "als_served": (
        lambda m, request: core_ranker(served_recommender(str(request.getfixturevalue("tmp_path_factory").mktemp("warehouse")), m, fit_als(m.matrix, ALS)), m),
        True,
    ),
    "popularity": (lambda m, request: popularity(m.matrix), False),
    "item_knn": (lambda m, request: item_knn(m.matrix, K=50), True),
    "bpr": (lambda m, request: bpr(m.matrix, factors=8, learning_rate=0.05, seed=0), True),
}

# Contract breaches this suite found in evaluation/recs.py, and the smallest k that shows each.
# Strict xfails: a fix shows up as XPASS and the mark must go.
KNOWN_BREACHES: dict[tuple[str, str], tuple[str, int]] = {
    ("item_knn", "count"): (
        "item-kNN scores only items with a neighbour among the user's; the others come back as -1 and are dropped, "
        "so the list is short: here nothing of the other group or the cold items (inherent to item-kNN, not padded)",
        ITEMS_PER_GROUP + 1,
    ),
}


def _cases(check: str, ks: list[int]) -> list:
    """(ranker, k) for every ranker and k; a known breach is a strict xfail from its first k on."""
    cases = []
    for name in RANKERS:
        for k in ks:
            reason, first_k = KNOWN_BREACHES.get((name, check), ("", 10**9))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if k >= first_k else []
            cases.append(pytest.param(name, k, marks=marks, id=f"{name}-k{k}"))
    return cases


@pytest.fixture(scope="module")
def ranking(matrix, request) -> Callable[[str, int], list[list[int]]]:
    """ranking(name, k): every user's list from that ranker over the module's matrix, built once."""
    built: dict[str, Ranker] = {}

    def rank(name: str, k: int) -> list[list[int]]:
        if name not in built:
            built[name] = RANKERS[name][0](matrix, request)
        return built[name](np.arange(len(matrix.user_ids)), k)

    return rank


def _unseen(matrix: InteractionMatrix, user: int) -> set[int]:
    return set(range(len(matrix.item_ids))) - set(matrix.matrix[user].indices.tolist())


@pytest.mark.parametrize(("name", "k"), _cases("unseen", [MISSED, MISSED + 2, ALL_UNSEEN + 2]))
def test_recommends_only_unseen_items_each_once(name, k, matrix, ranking):
    for user, items in enumerate(ranking(name, k)):
        assert set(items) <= _unseen(matrix, user), f"{matrix.user_ids[user]} is offered seen items"
        assert len(items) == len(set(items))


@pytest.mark.parametrize(("name", "k"), _cases("count", [1, MISSED, ALL_UNSEEN]))
def test_gives_k_items_when_k_exist(name, k, matrix, ranking):
    assert [len(items) for items in ranking(name, k)] == [k] * len(matrix.user_ids)


@pytest.mark.parametrize("name", [n for n, (_, personalised) in RANKERS.items() if personalised])
def test_own_group_unseen_items_come_first(name, matrix, ranking):
    for user, items in enumerate(ranking(name, MISSED + 2)):
        group = _group(matrix.user_ids[user])
        own_unseen = {i for i in _unseen(matrix, user) if _group(matrix.item_ids[i]) == group}
        assert set(items[:MISSED]) == own_unseen, f"{matrix.user_ids[user]}: {[matrix.item_ids[i] for i in items]}"


def test_popularity_ranks_unseen_items_by_distinct_users(matrix, ranking):
    counts = matrix.item_popularity()
    for user, items in enumerate(ranking("popularity", ALL_UNSEEN)):
        assert set(items) == _unseen(matrix, user)
        assert list(counts[items]) == sorted(counts[items], reverse=True)




@pytest.mark.parametrize(
    "name", list(RANKERS)
)
def test_a_fresh_fit_of_the_same_data_ranks_the_same(name, matrix, ranking, request):
    """Deterministic: built again from scratch (same data, same seed), every list is the same."""
    again = build_matrix(checkerboard(), item_ids=COLD_ITEMS)
    assert ranking(name, ALL_UNSEEN) == RANKERS[name][0](again, request)(np.arange(len(again.user_ids)), ALL_UNSEEN)


def test_als_ranking_of_a_known_user_equals_the_fold_in_of_their_history(core, matrix):
    """implicit's consistency check: recommend(user) == recommend(fold-in of that user's items), on the top items.

    Not exact: implicit solves users by a few conjugate-gradient steps against the item
    factors of the previous half-iteration; fold-in solves exactly against the final ones.
    """
    for user_id in matrix.user_ids:
        seen = core.seen(user_id)
        served = core.for_user(user_id, MISSED).items
        folded = core.recommend(core.fold_in(seen), MISSED, set(seen))
        assert [i for i, _ in served] == [i for i, _ in folded], user_id
        np.testing.assert_allclose([s for _, s in served], [s for _, s in folded], rtol=0.05)


def _same(ours, theirs) -> None:
    assert (ours.strategy, ours.known) == (theirs.strategy, theirs.known)
    assert [i for i, _ in ours.items] == [i for i, _ in theirs.items]
    np.testing.assert_allclose([s for _, s in ours.items], [s for _, s in theirs.items], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recent", [[], ["i00", "i17"]], ids=["als", "fold_in"])
def test_the_served_recommender_ranks_as_the_core_of_the_same_fit(served, core, matrix, recent):
    """What evaluation measures (from_fit) is what the service answers (Lance tables), on the top items."""
    for user_id in matrix.user_ids:
        _same(served.for_user(user_id, MISSED + 2, recent_item_ids=recent), core.for_user(user_id, MISSED + 2, recent_item_ids=recent))


@pytest.mark.parametrize("user_id", ["u000", "u107", "nobody"])
def test_the_served_recommender_gives_the_cores_items_and_scores_whole_catalogue(served, core, user_id):
    """Every item and score the same, whatever the order of equal scores (see the next test)."""
    ours, theirs = served.for_user(user_id, ALL_UNSEEN + 10), core.for_user(user_id, ALL_UNSEEN + 10)
    assert (ours.strategy, ours.known) == (theirs.strategy, theirs.known)
    assert dict(ours.items).keys() == dict(theirs.items).keys()
    for item_id, score in ours.items:
        assert score == pytest.approx(dict(theirs.items)[item_id], rel=1e-5, abs=1e-6)




@pytest.mark.parametrize(("user_id", "k"), [("u000", ALL_UNSEEN), ("nobody", 5)], ids=["cold-items-tie-at-zero", "popular-fallback"])
def test_the_served_recommender_orders_equal_scores_as_the_core(served, core, user_id, k):
    _same(served.for_user(user_id, k), core.for_user(user_id, k))
