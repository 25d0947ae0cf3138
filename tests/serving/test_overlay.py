"""Freshness on the read side: writes appended to the change log are served over the release
by the follower's next check, without a build (deletes gone, upserts found, events folded in)."""

from __future__ import annotations

import shutil
import zlib

import numpy as np
import pytest

from features.changes import parse_deletes, parse_records
from features.schemas import QADocument
from features.text import DEFAULT_CHUNK_OVERLAP_WORDS, DEFAULT_CHUNK_WORDS, answer_chunks, chunking_of
from ingest.ahead import AheadEmbedder, published_texts
from pipelines import lance_io
from pipelines.build_qa import chunk_rows
from serving.cache import SemanticCache
from serving.reload import StoreFollower
from serving.store import Store
from tests.conftest import FakeEncoder

MODES = ("vector", "keyword", "hybrid")


class HashingEncoder(FakeEncoder):
    """Bag of words hashed into the model's dimensions: texts sharing words are near, no model."""

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def follower(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    follower = StoreFollower(str(copy), lambda versions: Store(str(copy), HashingEncoder(), versions), interval_seconds=60)
    assert follower.refresh() is True and follower.current().changes == 0
    return follower


def write(follower: StoreFollower, kind: str, records: list, delete: bool = False) -> None:
    """Append to the change log as the write API does, then let the follower see it."""
    changes, rejected = parse_deletes(kind, records) if delete else parse_records(kind, records)
    assert rejected == []
    lance_io.append_changes(follower._warehouse, changes)
    assert follower.refresh_changes() is True


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def test_fresh_chunks_are_the_rows_build_qa_writes():
    document = QADocument("d1", " ".join(f"w{i}" for i in range(400)), question="Why  so\tlong?", source="s", tags=("a",))
    built = list(chunk_rows(("d1", [document]), DEFAULT_CHUNK_WORDS, DEFAULT_CHUNK_OVERLAP_WORDS))
    assert len(built) > 1 and answer_chunks(document) == built


def test_an_upserted_answer_is_found_in_every_mode_and_by_id(follower):
    question = "how do quokkas configure telemetry"
    before = follower.current()
    assert all("fresh-1" not in ids(before.answers.answer(question, 5, mode)) for mode in MODES)
    write(follower, "answers", [{"doc_id": "fresh-1", "question": "Quokka telemetry setup?",
                                 "answer": "Quokkas configure telemetry with the quokka telemetry switch.", "source": "new"}])
    store = follower.current()
    for mode in MODES:
        hits = store.answers.answer(question, 5, mode)
        assert ids(hits)[0] == "fresh-1", mode
        assert len(hits) == 5 and hits[0].fields["source"] == "new"
    assert "fresh-1" not in ids(store.answers.answer(question, 3, "hybrid", sources=["elsewhere"]))  # filters apply to it too
    assert store.answers.answer(question, 3, "vector", diversity=0.5)[0].id == "fresh-1"
    assert store.answers.document("fresh-1")["text"].startswith("Quokkas configure")
    assert before.answers.document("fresh-1") is None  # a request holding the old Store keeps its view


def test_a_deleted_answer_is_never_returned_and_k_still_come_back(follower):
    store = follower.current()
    question = "github strikethrough"
    top = {mode: ids(store.answers.answer(question, 3, mode)) for mode in MODES}
    gone = top["keyword"][0]
    write(follower, "answers", [gone], delete=True)
    fresh = follower.current()
    for mode in MODES:
        hits = ids(fresh.answers.answer(question, 3, mode))
        assert gone not in hits and len(hits) == 3, mode
    assert fresh.answers.document(gone) is None
    assert store.answers.document(gone) is not None


def test_a_replaced_answer_is_found_by_its_new_text_only(follower):
    store = follower.current()
    old = ids(store.answers.answer("github strikethrough", 1, "keyword"))[0]
    write(follower, "answers", [{"doc_id": old, "answer": "Wombats burrow underground at night."}])
    fresh = follower.current()
    assert old not in ids(fresh.answers.answer("github strikethrough", 5, "keyword"))
    assert ids(fresh.answers.answer("wombats burrow", 1, "keyword")) == [old]
    assert fresh.answers.document(old)["chunks"] == 1


def test_a_delete_empties_the_cache_and_an_event_keeps_it(follower):
    store = follower.current()
    cache = SemanticCache(store.answers._encoder.dimension)
    vector = store.encode("github strikethrough")
    hits = store.answers.answer("github strikethrough", 3, "hybrid")
    cache.put(vector, "params", store.cache_version, hits)
    write(follower, "events", [{"user_id": "u-cache", "item_id": store.recommender.popular(1)[0][0], "timestamp": 1.0}])
    assert cache.get(vector, "params", follower.current().cache_version) == hits  # answers unchanged: still cached
    write(follower, "answers", [hits[0].id], delete=True)
    assert cache.get(vector, "params", follower.current().cache_version) is None


def test_an_upserted_item_is_found_by_content_and_served_as_cold(follower):
    write(follower, "items", [{"item_id": "new-item", "title": "Quokka telemetry switch", "category": "Gadgets"}])
    recommender = follower.current().recommender
    found = recommender.search_items(recommender.encode("quokka telemetry switch"), 5)
    assert found[0][0] == "new-item" and len(found) == 5
    assert "new-item" not in dict(recommender.search_items(recommender.encode("quokka telemetry switch"), 5, categories=["Other"]))
    assert recommender.has_item("new-item") and recommender.title("new-item") == "Quokka telemetry switch"
    assert recommender.is_cold("new-item") and recommender.popularity("new-item") == 0
    neighbours = recommender.similar_items("new-item", 3)
    assert len(neighbours) == 3 and "new-item" not in dict(neighbours)
    assert recommender.content_search_info() == follower.current()._base_recommender.content_search_info()  # GET /version's
    assert recommender.content_search_info()["path"] == "memory"


def test_a_deleted_item_is_gone_from_every_list(follower):
    recommender = follower.current().recommender
    user = next(u for u in recommender.rows()["user_ids"] if recommender.for_user(u, 5).strategy == "als")
    top = recommender.for_user(user, 5).items[0][0]
    popular = recommender.popular(1)[0][0]
    probe = recommender.search_items(recommender.content_vector(top), 1)[0][0]
    write(follower, "items", [top, popular, probe], delete=True)
    fresh = follower.current().recommender
    lists = [fresh.for_user(user, 5).items, fresh.popular(5), fresh.for_user("nobody", 5).items,
             fresh.search_items(recommender.content_vector(top), 5), fresh.similar_by_behaviour(fresh.for_user(user, 1).items[0][0], 5)]
    for ranked in lists:
        assert len(ranked) == 5 and not {top, popular, probe} & set(dict(ranked))
    assert not fresh.has_item(top)


def test_the_table_is_searched_deeper_only_for_the_written_items_it_holds(follower, monkeypatch):
    recommender = follower.current().recommender
    table_item, retitled = (item_id for item_id, _ in recommender.popular(2))
    write(follower, "items", [{"item_id": f"brand-new-{i}", "title": f"New thing {i}"} for i in range(8)])
    write(follower, "items", [{"item_id": retitled, "title": "Retitled"}])  # its table row no longer counts either
    write(follower, "items", [table_item], delete=True)
    fresh = follower.current().recommender
    depths = []
    search = type(fresh._base).search_items
    monkeypatch.setattr(type(fresh._base), "search_items", lambda self, vector, k, *a, **kw: depths.append(k) or search(self, vector, k, *a, **kw))
    found = fresh.search_items(recommender.content_vector(table_item), 3)
    assert depths[0] == 3 + 2  # one deleted and one upserted row of the table; the eight new items are not in it
    assert len(found) == 3 and table_item not in dict(found)


def test_a_user_who_saw_a_deleted_item_still_gets_session_recommendations(follower):
    recommender = follower.current().recommender
    user = next(u for u in recommender.rows()["user_ids"] if len(recommender.seen(u)) >= 2)
    gone, kept = recommender.seen(user)[0], recommender.seen(user)[1]
    session = next(item for item, _ in recommender.popular(20) if item not in recommender.seen(user))
    write(follower, "items", [gone], delete=True)
    found = follower.current().recommender.for_user(user, 5, recent_item_ids=[session])
    assert found.strategy == "fold_in" and len(found.items) == 5
    assert gone not in dict(found.items) and not {kept, session} & set(dict(found.items))


def test_new_events_fold_into_the_users_recommendations(follower):
    recommender = follower.current().recommender
    user = next(u for u in recommender.rows()["user_ids"] if recommender.for_user(u, 5).strategy == "als")
    before = recommender.for_user(user, 5)
    bought = [item for item, _ in recommender.popular(40) if item not in before.known][-3:]
    write(follower, "events", [{"user_id": user, "item_id": item, "timestamp": 1.0 + i} for i, item in enumerate(bought)])
    after = follower.current().recommender.for_user(user, 5)
    assert after.strategy == "fold_in" and set(bought) <= set(after.known)
    assert not set(bought) & set(dict(after.items))
    expected = recommender.recommend(recommender.fold_in(list(dict.fromkeys(before.known + bought))), 5, set(before.known + bought))
    assert after.items == expected != before.items
    write(follower, "events", [{"user_id": "brand-new", "item_id": bought[0], "timestamp": 1.0}])
    assert follower.current().recommender.for_user("brand-new", 5).strategy == "fold_in"


def test_a_forgotten_user_is_served_as_unknown(follower):
    recommender = follower.current().recommender
    user = next(u for u in recommender.rows()["user_ids"] if recommender.for_user(u, 5).strategy == "als")
    write(follower, "users", [user], delete=True)
    fresh = follower.current().recommender
    found = fresh.for_user(user, 5)
    assert found.strategy == "popular" and found.items == fresh.popular(5) and not fresh.has_user(user)
    assert recommender.has_user(user)  # the old Store, as a request in flight holds it


def test_the_follower_applies_the_log_when_it_opens_a_release(follower):
    write(follower, "answers", ["placeholder"], delete=True)
    served = follower.current()
    reopened = Store(follower._warehouse, HashingEncoder(), served.versions).with_changes(served.changes)
    assert reopened.answers.document("placeholder") is None and reopened.cache_version == served.cache_version
    assert follower.refresh_changes() is False  # nothing new: the same Store stays


@pytest.mark.slow  # the in-process service loads the real model
def test_the_service_stops_serving_a_deleted_answer_and_item_within_two_seconds(service_app, warehouse, tmp_path):
    """Through the endpoints, with the real encoder, the follower's own polling and the cache."""
    import time

    from tests.serving.conftest import in_process

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    with in_process(service_app, copy) as client:
        body = {"question": "How do I strikethrough text in Gmail?", "k": 3, "mode": "hybrid"}
        first = client.post("/answer", json=body).json()
        assert client.post("/answer", json=body).json()["cached"] is True
        gone = first["answers"][0]["doc_id"]
        item = client.post("/recommend", json={"user_id": "nobody", "k": 1}).json()["items"][0]["item_id"]
        lance_io.append_changes(str(copy), parse_deletes("answers", [gone])[0] + parse_deletes("items", [item])[0])
        deadline = time.monotonic() + 2.0
        while client.get(f"/answers/{gone}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(f"/answers/{gone}").status_code == 404 and client.get(f"/items/{item}").status_code == 404
        again = client.post("/answer", json=body).json()
        assert again["cached"] is False and gone not in [a["doc_id"] for a in again["answers"]] and len(again["answers"]) == 3
        assert item not in [i["item_id"] for i in client.post("/recommend", json={"user_id": "nobody", "k": 5}).json()["items"]]
        assert client.post("/similar_items", json={"item_id": item, "k": 3}).status_code == 404


class Counting(HashingEncoder):
    """The writes' encoder, recording every text it embeds."""

    def __init__(self, name: str = "fake-encoder") -> None:
        super().__init__()
        self.name, self.embedded = name, []

    def encode(self, texts):
        self.embedded.extend(texts)
        return super().encode(texts)


def _writes_follower(warehouse, writes: HashingEncoder) -> StoreFollower:
    follower = StoreFollower(str(warehouse), lambda versions: Store(str(warehouse), HashingEncoder(), versions, writes), interval_seconds=60)
    assert follower.refresh() is True
    return follower


def test_texts_the_writer_embedded_are_kept_in_the_log_and_no_follower_embeds_them_again(fake_warehouse, tmp_path):
    """The writer's own follower, a second one (another worker, a restarted service) and the
    same writes without vectors serve the same; only a follower of another model embeds again."""
    results = {}
    for ahead in (False, True):
        copy = tmp_path / f"warehouse-{ahead}"
        shutil.copytree(fake_warehouse, copy)
        writes = Counting()
        follower = _writes_follower(copy, writes)
        changes, _ = parse_records("answers", [{"doc_id": "fresh-1", "answer": " ".join(f"quokka{i}" for i in range(300))}])
        items, _ = parse_records("items", [{"item_id": "new-item", "title": "Quokka lamp", "text": "A lamp for quokkas."}])
        if ahead:
            changes = AheadEmbedder(writes, lambda: published_texts(str(copy)))(changes + items)  # as the ingest process does
            assert len(writes.embedded) > 2 and all(c.embeddings is not None for c in changes)  # the chunks and the item
        primed = list(writes.embedded)
        lance_io.append_changes(str(copy), changes + ([] if ahead else items))
        assert follower.refresh_changes() is True
        assert (writes.embedded == primed) if ahead else len(writes.embedded) > 2  # the follower embedded nothing more
        second = Counting()
        other = _writes_follower(copy, second)  # started after the writes: it reads them from the log
        assert (second.embedded == []) if ahead else sorted(second.embedded) == sorted(writes.embedded)
        for store in (follower.current(), other.current()):
            answers = [(hit.id, round(hit.score, 5)) for hit in store.answers.answer("quokka7 quokka8", 5, "vector")]
            found = [(item_id, round(score, 5)) for item_id, score in store.recommender.search_items(HashingEncoder().encode(["quokka lamp"])[0], 3)]
            assert answers[0][0] == "fresh-1" and found[0][0] == "new-item"
            results.setdefault("served", set()).add((tuple(answers), tuple(found)))
        if ahead:
            stranger = Counting("another-model")
            _writes_follower(copy, stranger)
            assert sorted(stranger.embedded) == sorted(primed)  # another model's vectors are not taken
    assert len(results["served"]) == 1


def test_a_commit_embeds_at_most_so_many_texts_ahead_and_the_follower_the_rest(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    writes = Counting()
    follower = _writes_follower(copy, writes)
    items, _ = parse_records("items", [{"item_id": f"new-{n}", "title": f"Quokka lamp {n}"} for n in range(5)])
    ready = AheadEmbedder(writes, lambda: published_texts(str(copy)), max_texts=2)(items)
    assert [c.embeddings is not None for c in ready] == [True, True, False, False, False] and len(writes.embedded) == 2
    lance_io.append_changes(str(copy), ready)
    assert follower.refresh_changes() is True
    assert writes.embedded[2:] == ["Quokka lamp 2", "Quokka lamp 3", "Quokka lamp 4"]  # the other three, by the follower
    found = [item_id for item_id, _ in follower.current().recommender.search_items(HashingEncoder().encode(["quokka lamp 4"])[0], 1)]
    assert found == ["new-4"]


def test_an_upsert_replaced_later_in_its_commit_is_not_embedded_ahead(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    writes = Counting()
    first, _ = parse_records("items", [{"item_id": "lamp", "title": "Old lamp"}, {"item_id": "chair", "title": "Chair"}])
    second, _ = parse_records("items", [{"item_id": "lamp", "title": "New lamp"}])
    ready = AheadEmbedder(writes, lambda: published_texts(str(copy)))(first + second + parse_deletes("items", ["chair"])[0])
    assert writes.embedded == ["New lamp"] and [c.embeddings is not None for c in ready] == [False, False, True, False]


def test_texts_are_embedded_ahead_for_what_the_published_release_serves_and_none_before_one(fake_warehouse, tmp_path):
    """The ingest process knows no served Store: it embeds the texts the published release's
    followers would (its answers' chunking, items when it has them), and before any release
    nothing (the build embeds them)."""
    chunking, items = published_texts(str(fake_warehouse))
    metadata = lance_io.dataset(str(fake_warehouse), "answers").schema.metadata
    assert chunking == chunking_of(metadata) and items is True
    assert published_texts(str(tmp_path / "empty")) == (None, False)
    writes = Counting()
    answer, _ = parse_records("answers", [{"doc_id": "d", "answer": "Turn it off and on again."}])
    assert AheadEmbedder(writes, lambda: (None, False))(answer) == answer and writes.embedded == []
    assert AheadEmbedder(writes, lambda: (None, True))(answer)[0].embeddings is None  # items only: an answer is not embedded
    assert AheadEmbedder(writes, lambda: (chunking, False))(answer)[0].embeddings is not None


def test_the_release_is_read_again_once_its_check_interval_has_passed():
    reads = []

    def release():
        reads.append(len(reads))
        return (DEFAULT_CHUNK_WORDS, DEFAULT_CHUNK_OVERLAP_WORDS), len(reads) > 1  # items from the second read on

    embed = AheadEmbedder(Counting(), release, check_seconds=3600)
    assert [embed.released()[1], embed.released()[1]] == [False, False] and len(reads) == 1  # held
    embed = AheadEmbedder(Counting(), release, check_seconds=0)
    assert [embed.released()[1], embed.released()[1]] == [True, True] and len(reads) == 3  # read at each check
