import lance
import pyarrow as pa
import pytest

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


def test_publish_moves_the_tag_and_rollback_walks_back_through_releases(tmp_path):
    warehouse = str(tmp_path)
    versions = [lance_io.write_table(warehouse, "t", _table(n)) for n in (1, 2, 3)]
    assert lance_io.published_version(warehouse, "t") is None
    for version in versions:
        assert lance_io.publish_table(warehouse, "t", version) == version
    assert lance_io.published_version(warehouse, "t") == versions[2]
    assert lance.dataset(lance_io.table_uri(warehouse, "t"), version=lance_io.PUBLISHED_TAG).count_rows() == 3
    assert lance_io.rollback_table(warehouse, "t") == versions[1]
    assert lance_io.rollback_table(warehouse, "t") == versions[0]
    assert lance_io.published_version(warehouse, "t") == versions[0]
    with pytest.raises(ValueError, match="no earlier release"):
        lance_io.rollback_table(warehouse, "t")


def test_cleanup_keeps_the_retained_releases_and_anything_newer(tmp_path):
    warehouse = str(tmp_path)
    published = []
    for n in range(1, 5):
        published.append(lance_io.publish_table(warehouse, "t", lance_io.write_table(warehouse, "t", _table(n))))
    unpublished = lance_io.write_table(warehouse, "t", _table(9))
    removed = lance_io.cleanup_table(warehouse, "t", retain_releases=2)
    assert removed == 2
    uri = lance_io.table_uri(warehouse, "t")
    remaining = {v["version"] for v in lance.dataset(uri).versions()}
    assert remaining == {published[2], published[3], unpublished}
    assert lance.dataset(uri, version=lance_io.PUBLISHED_TAG).count_rows() == 4
    assert lance_io.rollback_table(warehouse, "t") == published[2]


@pytest.mark.parametrize(("rows", "dimension", "partitions", "sub_vectors"), [(50_000, 384, 224, 48), (100, 32, 10, 4), (10_000, 36, 100, 4)])
def test_ivf_pq_parameters_follow_the_table_shape(rows, dimension, partitions, sub_vectors):
    parameters = lance_io.ivf_pq_parameters(rows, dimension)
    assert parameters == {"num_partitions": partitions, "num_sub_vectors": sub_vectors}
    assert dimension % parameters["num_sub_vectors"] == 0
