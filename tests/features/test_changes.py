"""The change log's pure parts: validation of written records and the fold of a log."""

from __future__ import annotations

import pytest

from features.changes import ANSWERS, EVENTS, ITEMS, USERS, Change, fold, parse_deletes, parse_records
from features.errors import InputError
from features.schemas import Interaction, Item


def test_good_records_are_kept_and_each_bad_one_is_rejected_by_index_and_field():
    changes, rejected = parse_records(
        ITEMS, [{"item_id": "a", "title": "A"}, {"item_id": " ", "title": "B"}, {"item_id": "c", "titel": "C"}, "d", {"item_id": "e"}]
    )
    assert [c.key for c in changes] == ["a"]
    assert [(r.index, r.field) for r in rejected] == [(1, "item_id"), (2, "titel"), (3, None), (4, "title")]
    assert "unknown field 'titel'" in rejected[1].reason


def test_answers_and_events_are_checked_as_the_builds_readers_check_them():
    answers, bad_answers = parse_records(ANSWERS, [{"doc_id": "d", "answer": "x", "tags": "a, b"}, {"doc_id": "e", "answer": "x\x00" * 20_000}])
    assert answers[0].record["tags"] == ["a", "b"] and [r.field for r in bad_answers] == ["answer"]
    _, nul = parse_records(ITEMS, [{"item_id": "a", "title": "A", "category": "x\x00y"}, {"item_id": "b\x00", "title": "B"}])
    assert [(r.index, r.field) for r in nul] == [(0, "category"), (1, "item_id")] and "NUL" in nul[0].reason
    events, bad_events = parse_records(EVENTS, [{"user_id": "u", "item_id": "i", "timestamp": "2026-11-30T10:00:00Z"},
                                                {"user_id": "u", "item_id": "i", "timestamp": "yesterday"}])
    assert events[0].record["timestamp"] > 1.7e9 and [r.field for r in bad_events] == ["timestamp"]


def test_deletes_refuse_empty_ids_and_unknown_kinds():
    changes, rejected = parse_deletes(USERS, ["u1", "", 3])
    assert [c.key for c in changes] == ["u1"] and [r.index for r in rejected] == [1, 2]
    with pytest.raises(InputError, match="cannot delete 'events'"):
        parse_deletes(EVENTS, ["x"])


def _item(key: str, title: str = "t") -> Change:
    return Change(ITEMS, "upsert", key, {"item_id": key, "title": title, "text": None, "category": None})


def _event(user: str, item: str) -> Change:
    return Change(EVENTS, "event", user, {"user_id": user, "item_id": item, "timestamp": 1.0, "event": None, "value": None})


def test_the_latest_change_of_an_id_wins():
    folded = fold([_item("a", "old"), _item("b"), Change(ITEMS, "delete", "b"), _item("a", "new"), Change(ITEMS, "delete", "c"), _item("c")])
    assert folded.items["a"].title == "new" and folded.items["b"] is None and folded.items["c"].title == "t"
    assert folded.deleted(ITEMS) == {"b"} and {i.item_id for i in folded.upserted_items()} == {"a", "c"}
    assert not folded.keeps_item(Item("a", "from the file")) and folded.keeps_item(Item("z", "untouched"))


def test_a_forgotten_user_loses_earlier_events_and_file_events_but_keeps_later_ones():
    folded = fold([_event("u", "i1"), _event("v", "i1"), Change(USERS, "delete", "u"), _event("u", "i2")])
    assert [(e.user_id, e.item_id) for e in folded.events] == [("v", "i1"), ("u", "i2")]
    assert not folded.keeps_event(Interaction("u", "i9", 0.0)) and folded.keeps_event(Interaction("v", "i9", 0.0))


def test_events_on_a_deleted_item_no_longer_count():
    folded = fold([_event("u", "i1"), Change(ITEMS, "delete", "i1"), _event("u", "i1"), _event("u", "i2")])
    assert [e.item_id for e in folded.events] == ["i2"]
    assert not folded.keeps_event(Interaction("w", "i1", 0.0))


def _random_changes(seed: int, count: int) -> list:
    """A random mix of every kind of change over a few ids, so ids are upserted, deleted,
    upserted again and users forgotten between their events."""
    import random



    rng = random.Random(seed)
    out = []
    for n in range(count):
        kind = rng.choice(["items", "answers", "events", "users"])
        key = f"{kind[0]}{rng.randrange(4)}"
        if kind == "events":
            out.append(Change("events", "event", f"u{rng.randrange(3)}",
                              {"user_id": f"u{rng.randrange(3)}", "item_id": f"i{rng.randrange(4)}", "timestamp": float(n), "event": None, "value": None}))
        elif kind == "users":
            out.append(Change("users", "delete", f"u{rng.randrange(3)}"))
        elif rng.random() < 0.3:
            out.append(Change(kind, "delete", key))
        elif kind == "items":
            out.append(Change("items", "upsert", key, {"item_id": key, "title": f"t{n}", "text": None, "category": None}))
        else:
            out.append(Change("answers", "upsert", key, {"doc_id": key, "answer": f"a{n}", "question": None, "source": None, "tags": ["x"]}))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_a_fold_continued_from_an_earlier_fold_equals_the_fold_of_everything(seed):


    changes = _random_changes(seed, 60)
    whole = fold(changes)
    step = None
    for start in range(0, len(changes), 7):  # the follower's steps: a few changes at a time
        step = fold(changes[start:start + 7], step)
    assert step == whole
