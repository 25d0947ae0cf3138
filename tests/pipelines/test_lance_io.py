import lance
import pyarrow as pa
import pytest

from registry.log import published_version, read_releases
from pipelines import lance_io


def _table(n: int) -> pa.Table:
    return lance_io.to_arrow([{"id": str(i), "x": float(i)} for i in range(n)], pa.schema([("id", pa.string()), ("x", pa.float64())]))


def test_each_write_is_a_new_version_and_old_versions_stay_readable(tmp_path):
    first = lance_io.write_table(str(tmp_path), "t", _table(3), {b"k": b"v1"})
    second = lance_io.write_table(str(tmp_path), "t", _table(5), {b"k": b"v2"})
    assert second == first + 1
    uri = lance_io.table_uri(str(tmp_path), "t")
    assert lance.dataset(uri, version=first).count_rows() == 3
    assert lance.dataset(uri).count_rows() == 5
    assert lance.dataset(uri).schema.metadata[b"k"] == b"v2"
    assert lance_io.table_versions(str(tmp_path), ["t"]) == {"t": second}


def test_empty_table_is_refused_and_published_version_untouched(tmp_path):
    version = lance_io.write_table(str(tmp_path), "t", _table(2))
    with pytest.raises(ValueError, match="empty 't' table"):
        lance_io.write_table(str(tmp_path), "t", _table(0))
    assert lance_io.table_versions(str(tmp_path), ["t"]) == {"t": version}


def test_row_missing_a_schema_column_is_named():
    with pytest.raises(KeyError, match="'x'"):
        lance_io.to_arrow([{"id": "1"}], pa.schema([("id", pa.string()), ("x", pa.float64())]))


def _publish(warehouse: str, retain: int = 5, **versions: int):
    return lance_io.publish_release(warehouse, read_releases(warehouse), versions, retain)


def test_publish_moves_the_tag_and_rollback_walks_back_through_releases(tmp_path):
    warehouse = str(tmp_path)
    versions = [lance_io.write_table(warehouse, "t", _table(n)) for n in (1, 2, 3)]
    assert published_version(warehouse, "t") is None
    for number, version in enumerate(versions, start=1):
        release = _publish(warehouse, t=version)
        assert (release.number, release.tables) == (number, {"t": version})
    assert published_version(warehouse, "t") == versions[2]
    assert lance.dataset(lance_io.table_uri(warehouse, "t"), version=lance_io.PUBLISHED_TAG).count_rows() == 3
    assert lance_io.rollback_release(warehouse).tables == {"t": versions[1]}
    assert lance_io.rollback_release(warehouse).tables == {"t": versions[0]}
    assert published_version(warehouse, "t") == versions[0]
    assert lance.dataset(lance_io.table_uri(warehouse, "t"), version=lance_io.PUBLISHED_TAG).count_rows() == 1
    with pytest.raises(ValueError, match="no earlier release"):
        lance_io.rollback_release(warehouse)


def test_a_release_names_every_table_and_keeps_the_ones_it_does_not_change(tmp_path):
    warehouse = str(tmp_path)
    a1, b1 = lance_io.write_table(warehouse, "a", _table(1)), lance_io.write_table(warehouse, "b", _table(1))
    _publish(warehouse, a=a1, b=b1)
    a2 = lance_io.write_table(warehouse, "a", _table(2))
    assert _publish(warehouse, a=a2).tables == {"a": a2, "b": b1}
    assert [r.tables for r in read_releases(warehouse).releases] == [{"a": a1, "b": b1}, {"a": a2, "b": b1}]


def test_a_release_over_a_stale_log_is_refused_and_changes_nothing(tmp_path):
    warehouse = str(tmp_path)
    first = lance_io.write_table(warehouse, "t", _table(1))
    _publish(warehouse, t=first)
    stale = read_releases(warehouse)
    second = lance_io.write_table(warehouse, "t", _table(2))
    winner = lance_io.publish_release(warehouse, stale, {"t": second}, 5)
    with pytest.raises(lance_io.ReleaseConflict, match="changed the release log"):
        lance_io.publish_release(warehouse, stale, {"t": first}, 5)
    log = read_releases(warehouse)
    assert log.current == winner and [r.number for r in log.releases] == [1, 2]


def test_cleanup_keeps_the_retained_releases_and_anything_newer(tmp_path):
    warehouse = str(tmp_path)
    published = []
    for n in range(1, 5):
        published.append(_publish(warehouse, retain=2, t=lance_io.write_table(warehouse, "t", _table(n))).tables["t"])
    unpublished = lance_io.write_table(warehouse, "t", _table(9))
    removed = lance_io.cleanup_table(warehouse, "t", read_releases(warehouse).releases)
    assert removed == 2
    uri = lance_io.table_uri(warehouse, "t")
    remaining = {v["version"] for v in lance.dataset(uri).versions()}
    assert remaining == {published[2], published[3], unpublished}
    assert [r.tables["t"] for r in read_releases(warehouse).releases] == published[2:]
    assert lance.dataset(uri, version=lance_io.PUBLISHED_TAG).count_rows() == 4
    assert lance_io.rollback_release(warehouse).tables == {"t": published[2]}


def _matches(warehouse: str, query: str) -> list[str]:
    import lancedb
    from lance.query import MatchQuery

    dataset = lancedb.connect(warehouse).open_table("answers").to_lance()
    return [row["doc_id"] for row in dataset.to_table(columns=["doc_id"], full_text_query=MatchQuery(query, "text"), limit=5).to_pylist()]


def test_the_full_text_index_tokenizes_as_its_config_says(tmp_path):
    from features.schemas import ANSWER_FTS, FTSConfig

    warehouse = str(tmp_path)
    lance_io.write_table(warehouse, "answers", pa.table({"doc_id": ["a", "b"], "text": ["she runs every morning", "the cat sat"]}))
    lance_io.create_fts_index(warehouse, "answers")  # today's behaviour: stemmed, stop words dropped
    assert ANSWER_FTS == FTSConfig(stem=True, remove_stop_words=True)
    assert (_matches(warehouse, "running"), _matches(warehouse, "the")) == (["a"], [])
    lance_io.create_fts_index(warehouse, "answers", "text", FTSConfig(stem=False, remove_stop_words=False))
    assert (_matches(warehouse, "running"), _matches(warehouse, "runs"), _matches(warehouse, "the")) == ([], ["a"], ["b"])


def test_a_release_log_written_before_candidates_is_read_and_extended(tmp_path):
    """A log with the four columns an older recqa wrote: read as is, and the next release adds the new ones."""
    warehouse = str(tmp_path)
    lance.write_dataset(pa.table({"release": [1], "action": ["publish"], "created_at": pa.array([0], pa.timestamp("us", tz="UTC")),
                                  "tables": ['{"answers": 3}']}), lance_io.table_uri(warehouse, "releases"))
    log = read_releases(warehouse)
    assert log.current.tables == {"answers": 3} and log.current.candidates == {} and log.current.forced == []
    release = lance_io.publish_release(warehouse, log, {"answers": 4}, 5, candidates={"qa": "qa-x"}, forced=["qa"], reports={"qa": ""})
    after = read_releases(warehouse)
    assert [r.tables for r in after.releases] == [{"answers": 3}, {"answers": 4}]
    assert after.current == release and after.current.forced == ["qa"] and after.releases[0].candidates == {}
    assert lance_io.rollback_release(warehouse).tables == {"answers": 3}


def test_first_candidate_events_written_at_once_are_all_kept(tmp_path):
    """Builds create the table when they start and append when they end: every event is kept."""
    import threading

    from features.candidates import Candidate, built_row, new_candidate_id
    from registry.log import read_candidates

    for trial in range(5):
        warehouse = str(tmp_path / f"w{trial}")
        ids = [new_candidate_id("qa") for _ in range(4)]
        barrier = threading.Barrier(len(ids))
        errors = []

        def write(candidate_id: str) -> None:
            try:
                lance_io.ensure_candidates_table(warehouse)  # what each build does first; these creates race each other
                barrier.wait(timeout=30)
                lance_io.append_candidate_events(warehouse, [built_row(Candidate(candidate_id, "qa", {"answers": 1}))])
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=write, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and sorted(c.id for c in read_candidates(warehouse)) == sorted(ids)
