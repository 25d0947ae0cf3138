"""The Store opens the tables a release names and refuses tables it cannot serve correctly."""

import numpy as np
import pytest

from features.errors import TableContractError
from features.schemas import META_ALS, USERS_TABLE
from pipelines import lance_io
from registry.log import published_versions
from serving.store import ANSWER_TABLES, RECOMMENDATION_TABLES, Store
from tests.conftest import FakeEncoder


@pytest.mark.parametrize(("name", "dimension"), [("other-model", 384), ("all-MiniLM-L6-v2", 768)])
def test_tables_of_another_encoder_are_refused(fake_warehouse, name, dimension):
    with pytest.raises(TableContractError, match="embedded by 'all-MiniLM-L6-v2' \\(384 dims\\)"):
        Store(str(fake_warehouse), FakeEncoder(name, dimension), published_versions(str(fake_warehouse)))


def test_users_and_items_of_different_fits_are_refused(fake_warehouse, tmp_path):
    import shutil

    import lance

    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    users = lance.dataset(str(copy / f"{USERS_TABLE}.lance")).to_table()
    other_fit = lance_io.write_table(str(copy), USERS_TABLE, users, {META_ALS: b'{"factors": 32, "random_state": 1}'})
    versions = {**published_versions(str(copy)), USERS_TABLE: other_fit}  # what publish's own check refuses
    with pytest.raises(TableContractError, match="different ALS fits"):
        Store(str(copy), FakeEncoder("all-MiniLM-L6-v2", 384), versions)


def test_a_release_naming_no_table_is_refused(tmp_path):
    with pytest.raises(TableContractError, match="names none of the tables"):
        Store(str(tmp_path), FakeEncoder("all-MiniLM-L6-v2", 384), {})


def test_a_released_table_missing_from_the_warehouse_is_named(fake_warehouse, tmp_path):
    import shutil

    for name in ("users", "items"):
        shutil.copytree(fake_warehouse / f"{name}.lance", tmp_path / f"{name}.lance")
    with pytest.raises(TableContractError, match="has no table 'answers', which the release names"):
        Store(str(tmp_path), FakeEncoder("all-MiniLM-L6-v2", 384), published_versions(str(fake_warehouse)))


def test_only_the_answers_table_is_opened_when_the_release_names_only_it(fake_warehouse):
    versions = {"answers": published_versions(str(fake_warehouse))["answers"]}
    store = Store(str(fake_warehouse), FakeEncoder("all-MiniLM-L6-v2", 384), versions)
    assert store.versions == versions and store.recommender is None
    assert store.answers.answer("github strikethrough", 2, "keyword")
    assert store.absent(ANSWER_TABLES) is None
    reason = store.absent(RECOMMENDATION_TABLES)
    assert reason.startswith("the published release has no 'users' and 'items' tables: this warehouse serves answers only")
    assert "recqa build-recs" in reason


def test_only_users_and_items_are_opened_when_the_release_names_only_them(fake_warehouse):
    versions = {name: v for name, v in published_versions(str(fake_warehouse)).items() if name != "answers"}
    store = Store(str(fake_warehouse), FakeEncoder("all-MiniLM-L6-v2", 384), versions)
    assert store.versions == versions and set(versions) == {"users", "items"} and store.answers is None
    assert store.recommender.popular(2)
    assert store.absent(RECOMMENDATION_TABLES) is None
    assert store.absent(ANSWER_TABLES) == (
        "the published release has no 'answers' table: this warehouse serves recommendations only (run `recqa build-qa`, then publish)"
    )


@pytest.mark.parametrize(("released", "missing"), [("users", "items"), ("items", "users")])
def test_users_without_items_or_items_without_users_break_the_contract(fake_warehouse, released, missing):
    versions = {name: v for name, v in published_versions(str(fake_warehouse)).items() if name != missing}
    with pytest.raises(TableContractError, match=f"names '{released}' but no '{missing}'"):
        Store(str(fake_warehouse), FakeEncoder("all-MiniLM-L6-v2", 384), versions)


def test_a_cold_item_has_no_behaviour_and_falls_back_to_content(warehouse, tmp_path):
    import shutil

    from pipelines import build_recs, publish

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 3},{1_600_000_000 + j}\n" for u in range(6) for j in range(2)))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni0,Red tea mug\ni1,Blue coffee mug\ni2,Steel kettle\ni9,Green tea mug\n")
    built = build_recs.run(["--warehouse", str(copy), "--input-format", "contract", "--interactions", str(events), "--items", str(items)])
    publish.run(["--warehouse", str(copy), "--candidate", built.candidate, "--force", "--allow-shrink"])
    store = Store(str(copy), FakeEncoder("all-MiniLM-L6-v2", 384), published_versions(str(copy))).recommender
    assert store.is_cold("i9") and not store.is_cold("i0")
    neighbours = [item_id for item_id, _ in store.similar_items("i9", 2, "content")]
    assert neighbours[0] == "i0"  # "Green tea mug" is nearest to "Red tea mug" by text
    assert "i9" not in neighbours


def test_recommendations_are_the_exact_top_k_by_dot_product_under_filters_and_history(fake_warehouse):
    """Scored in memory over every item: checked against numpy over the published table itself."""
    import collections

    import lance

    from features.schemas import ITEMS_TABLE, PUBLISHED_TAG, table_uri

    store = Store(str(fake_warehouse), FakeEncoder("all-MiniLM-L6-v2", 384), published_versions(str(fake_warehouse))).recommender
    items = lance.dataset(table_uri(str(fake_warehouse), ITEMS_TABLE), version=PUBLISHED_TAG).to_table(
        columns=["item_id", "category", "vector"]
    )
    ids = items.column("item_id").to_pylist()
    categories = items.column("category").to_pylist()
    vectors = np.stack(items.column("vector").to_numpy(zero_copy_only=False))
    user = next(u for u in store._user_index if len(store.seen(u)) >= 3)
    seen = set(store.seen(user))
    wanted = [c for c, _ in collections.Counter(categories).most_common(3)[1:]]  # a selective filter
    scores = vectors @ store.user_vector(user)
    allowed = [i for i in range(len(ids)) if categories[i] in wanted and ids[i] not in seen]
    expected = sorted(allowed, key=lambda i: (-scores[i], i))
    exclude = [ids[expected[0]]]  # excluding the best one shifts the list by one
    found = store.for_user(user, 5, categories=wanted, exclude_ids=exclude)
    assert found.strategy == "als"
    assert [item_id for item_id, _ in found.items] == [ids[i] for i in expected[1:6]]
    np.testing.assert_allclose([s for _, s in found.items], scores[expected[1:6]], rtol=1e-5)
    assert not seen & {item_id for item_id, _ in found.items}
    kept = store.for_user(user, 5, exclude_seen=False).items
    assert [i for i, _ in kept] == [ids[i] for i in np.argsort(-scores, kind="stable")[:5]]
