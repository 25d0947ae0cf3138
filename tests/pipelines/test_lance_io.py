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
