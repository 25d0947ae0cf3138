"""The change log on a real Lance table: appends acknowledged only once read back, concurrent
writers losing and duplicating nothing, snapshots and what came after them."""

from __future__ import annotations

import threading

from features.changes import ITEMS, USERS, fold, parse_deletes, parse_records
from pipelines import lance_io
from registry.log import read_changes


def _items(prefix: str, count: int):
    changes, rejected = parse_records(ITEMS, [{"item_id": f"{prefix}{i}", "title": f"Item {i}"} for i in range(count)])
    assert not rejected
    return changes


def test_no_log_reads_as_empty(tmp_path):
    log = read_changes(str(tmp_path))
    assert log.changes == () and log.version == 0


def test_a_snapshot_and_the_changes_after_it(tmp_path):
    warehouse = str(tmp_path)
    first = lance_io.append_changes(warehouse, _items("a", 3))
    second = lance_io.append_changes(warehouse, parse_deletes(ITEMS, ["a1"])[0])
    assert [c.key for c in read_changes(warehouse, version=first).changes] == ["a0", "a1", "a2"]
    assert [(c.key, c.op) for c in read_changes(warehouse, after=first).changes] == [("a1", "delete")]
    latest = read_changes(warehouse)
    assert latest.version == second and fold(latest.changes).deleted(ITEMS) == {"a1"}


def test_concurrent_writers_neither_lose_nor_duplicate_a_change(tmp_path):
    warehouse = str(tmp_path)
    lance_io.ensure_changes_table(warehouse)
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for batch in range(5):
                lance_io.append_changes(warehouse, _items(f"{prefix}{batch}-", 20))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in ("x", "y", "z")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    keys = [c.key for c in read_changes(warehouse).changes]
    assert len(keys) == 3 * 5 * 20 == len(set(keys))
    for prefix in ("x", "y", "z"):  # each writer's own order is kept
        own = [k for k in keys if k.startswith(prefix)]
        assert own == [f"{prefix}{b}-{i}" for b in range(5) for i in range(20)]


def test_a_user_deleted_in_the_same_commit_as_their_event_is_forgotten_with_it(tmp_path):
    from features.changes import EVENTS

    warehouse = str(tmp_path)
    events, _ = parse_records(EVENTS, [{"user_id": "u", "item_id": "i", "timestamp": 1}])
    lance_io.append_changes(warehouse, events + parse_deletes(USERS, ["u"])[0])
    folded = fold(read_changes(warehouse).changes)
    assert folded.events == () and folded.forgotten == {"u"}


def test_after_a_version_purge_removed_every_change_is_returned(tmp_path):
    import lance

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri

    warehouse = str(tmp_path)
    first = lance_io.append_changes(warehouse, _items("a", 2))
    lance_io.append_changes(warehouse, _items("b", 1))
    ds = lance.dataset(table_uri(warehouse, CHANGES_TABLE))
    ds.cleanup_old_versions(older_than=__import__("datetime").timedelta(0), error_if_tagged_old_versions=False)
    assert first not in {v["version"] for v in lance.dataset(table_uri(warehouse, CHANGES_TABLE)).versions()}
    assert [c.key for c in read_changes(warehouse, after=first).changes] == ["a0", "a1", "b0"]  # a superset, never an error


def test_compaction_bounds_fragments_and_versions_and_keeps_tagged_snapshots(tmp_path):
    import lance

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri

    warehouse = str(tmp_path)
    versions = [lance_io.append_changes(warehouse, _items(f"c{n}-", 2)) for n in range(30)]
    lance_io.tag_changes_snapshot(warehouse, versions[9], "qa-20261130T000000-aaaaaa")
    lance_io.tag_changes_snapshot(warehouse, versions[19], "recs-20261130T000000-bbbbbb")
    assert len(lance.dataset(table_uri(warehouse, CHANGES_TABLE)).get_fragments()) == 30
    result = lance_io.compact_changes(warehouse, keep_seconds=0)
    ds = lance.dataset(table_uri(warehouse, CHANGES_TABLE))
    assert result["fragments"] == len(ds.get_fragments()) == 1
    kept = {v["version"] for v in ds.versions()}
    assert {versions[9], versions[19], ds.version} <= kept and len(kept) == 3  # the snapshots and the latest
    # nothing was lost, and a tagged snapshot still reads as it was
    assert len(read_changes(warehouse).changes) == 60
    assert [c.key for c in read_changes(warehouse, after=versions[19]).changes] == [f"c{n}-{i}" for n in range(20, 30) for i in range(2)]
    assert lance_io.release_snapshot_tags(warehouse, keep={"recs-20261130T000000-bbbbbb"}) == 1
    lance_io.compact_changes(warehouse, keep_seconds=0)
    assert versions[9] not in {v["version"] for v in lance.dataset(table_uri(warehouse, CHANGES_TABLE)).versions()}
    assert len(read_changes(warehouse, version=versions[19]).changes) == 40


def test_compaction_merges_small_fragments_and_leaves_full_ones_untouched(tmp_path, monkeypatch):
    import lance

    from features.changes import CHANGES_TABLE
    from features.schemas import table_uri
    from registry.log import change_cursor, read_new_changes

    monkeypatch.setattr(lance_io, "CHANGES_FRAGMENT_ROWS", 10)
    warehouse = str(tmp_path)
    uri = table_uri(warehouse, CHANGES_TABLE)
    for n in range(12):
        lance_io.append_changes(warehouse, _items(f"a{n}-", 2))
    lance_io.compact_changes(warehouse, keep_seconds=0)
    rows = {f.fragment_id: f.count_rows() for f in lance.dataset(uri).get_fragments()}
    full = {fragment for fragment, count in rows.items() if count >= 10}
    assert len(rows) < 12 and full and sum(rows.values()) == 24
    read = lance_io.append_changes(warehouse, _items("a12-", 2))
    cursor = change_cursor(warehouse, read)  # a follower that has read up to a12
    for n in range(13, 15):
        lance_io.append_changes(warehouse, _items(f"a{n}-", 2))
    lance_io.compact_changes(warehouse, keep_seconds=0)  # a12 (read) merged with a13, a14 (new)
    after = {f.fragment_id: f.count_rows() for f in lance.dataset(uri).get_fragments()}
    assert {f: after.get(f) for f in full} == {f: rows[f] for f in full}  # the full ones not rewritten
    assert [after[f] for f in set(after) - set(rows)] == [6]  # the three new ones merged into one
    keys = [c.key for c in read_changes(warehouse).changes]
    assert keys == [f"a{n}-{i}" for n in range(15) for i in range(2)]  # nothing lost, commit order kept
    new, _ = read_new_changes(warehouse, lance.dataset(uri).version, cursor)
    assert [c.key for c in new] == [f"a{n}-{i}" for n in range(13, 15) for i in range(2)]  # a merged fragment's read rows are not new


def test_a_follower_reads_only_what_is_new_across_appends_compaction_and_purge(tmp_path):
    from registry.log import change_cursor, read_new_changes

    warehouse = str(tmp_path)
    versions = [lance_io.append_changes(warehouse, _items(f"f{n}-", 2)) for n in range(5)]
    cursor = change_cursor(warehouse, versions[1])
    assert len(cursor.fragments) == 2 and cursor.version == versions[1]
    new, cursor = read_new_changes(warehouse, versions[4], cursor)
    assert [c.key for c in new] == [f"f{n}-{i}" for n in range(2, 5) for i in range(2)]
    assert read_new_changes(warehouse, versions[4], cursor) == ((), cursor)  # nothing new: nothing read
    # a compaction rewrites every row into new fragments: none of them reads as new
    lance_io.compact_changes(warehouse, keep_seconds=0)
    latest = lance_io.append_changes(warehouse, _items("g", 1))
    new, cursor = read_new_changes(warehouse, latest, cursor)
    assert [c.key for c in new] == ["g0"]
    # a purge removes the snapshot a build applied: the follower starts from the whole log,
    # the superset read_changes(after=...) gives too
    lance_io.purge_changes(warehouse, "key = 'f0-0'")
    fresh = change_cursor(warehouse, versions[1])
    assert fresh.version == 0
    everything, _ = read_new_changes(warehouse, read_changes(warehouse).version, fresh)
    assert [c.key for c in everything] == [c.key for c in read_changes(warehouse).changes] and "f0-0" not in {c.key for c in everything}


def test_an_upserts_vectors_are_kept_with_it_and_read_back_by_a_follower_not_by_a_build(tmp_path):
    import dataclasses

    import numpy as np

    from features.changes import Embeddings, text_digest
    from registry.log import change_cursor, read_new_changes

    warehouse = str(tmp_path)
    items = _items("a", 3)
    vectors = np.arange(2 * 4, dtype=np.float32).reshape(2, 4)
    kept = Embeddings("model-x", (text_digest("one"), text_digest("two")), vectors)
    version = lance_io.append_changes(warehouse, [dataclasses.replace(items[0], embeddings=kept), *items[1:]])
    new, _ = read_new_changes(warehouse, version, change_cursor(warehouse, 0))
    assert [c.key for c in new] == ["a0", "a1", "a2"] and [c.embeddings is None for c in new] == [False, True, True]
    found = new[0].embeddings
    assert found.model == "model-x" and found.digests == kept.digests and np.array_equal(found.vectors, vectors)
    assert all(c.embeddings is None for c in read_changes(warehouse).changes)  # a build embeds its texts itself
    assert read_changes(warehouse).changes == new  # and reads the same changes


def test_a_log_made_before_vectors_were_kept_gets_their_columns_and_keeps_its_rows(tmp_path):
    from datetime import datetime, timezone

    import lance
    import pyarrow as pa

    from features.changes import CHANGES_SCHEMA, CHANGES_TABLE, VECTOR_COLUMNS, change_rows
    from features.schemas import table_uri

    warehouse = str(tmp_path)
    old_schema = pa.schema([f for f in CHANGES_SCHEMA if f.name not in VECTOR_COLUMNS])
    rows = [{k: v for k, v in row.items() if k not in VECTOR_COLUMNS}
            for row in change_rows(_items("old", 2), datetime.now(timezone.utc), "b1")]
    lance.write_dataset(pa.Table.from_pylist(rows, schema=old_schema), table_uri(warehouse, CHANGES_TABLE), schema=old_schema)
    lance_io.append_changes(warehouse, _items("new", 1))  # the writer adds the columns first, null in the old rows
    ds = lance.dataset(table_uri(warehouse, CHANGES_TABLE))
    assert set(VECTOR_COLUMNS) <= set(ds.schema.names)
    assert [c.key for c in read_changes(warehouse).changes] == ["old0", "old1", "new0"]
    lance_io.ensure_changes_table(warehouse)  # a second writer's start: nothing more to add
    assert lance.dataset(table_uri(warehouse, CHANGES_TABLE)).version == ds.version
