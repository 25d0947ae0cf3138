"""`recqa publish` moves the tag only over tables that pass their checks; rollback moves it back."""

from __future__ import annotations

import shutil

import lance
import numpy as np
import pyarrow as pa
import pytest

from features.errors import InputError
from features.schemas import META_ALS
from pipelines import lance_io, publish
from pipelines.checks import check_tables


@pytest.fixture
def copy(warehouse, tmp_path):
    target = tmp_path / "warehouse"
    shutil.copytree(warehouse, target)
    return str(target)


def test_the_session_warehouse_passes_its_checks_and_is_published(warehouse):
    assert check_tables(str(warehouse), list(publish.ALL_TABLES)) == []
    for name in publish.ALL_TABLES:
        assert lance_io.published_version(str(warehouse), name) == lance_io.table_versions(str(warehouse), [name])[name]


def test_tables_from_different_fits_are_not_published(copy):
    before = {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES}
    users = lance.dataset(lance_io.table_uri(copy, "users")).to_table()
    lance_io.write_table(copy, "users", users, {META_ALS: b'{"factors": 32, "random_state": 7}'})
    with pytest.raises(publish.PublishError, match="different ALS fits"):
        publish.run(["--warehouse", copy])
    assert {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES} == before


def test_non_finite_vectors_and_missing_indexes_are_named(copy):
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    vectors = np.stack(answers.column("vector").to_numpy(zero_copy_only=False))
    vectors[3, 0] = np.nan
    broken = answers.set_column(answers.schema.get_field_index("vector"), "vector", pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 384))
    lance_io.write_table(copy, "answers", broken, answers.schema.metadata)
    problems = check_tables(copy, ["answers"], ann_min_rows=100)
    assert "answers.vector: null or non-finite vectors" in problems
    assert any("answers.vector" in p and "no vector index" in p for p in problems)


def test_rollback_restores_the_previous_release(copy):
    first = {name: lance_io.published_version(copy, name) for name in publish.ALL_TABLES}
    answers = lance.dataset(lance_io.table_uri(copy, "answers")).to_table()
    lance_io.write_table(copy, "answers", answers.slice(0, 10), answers.schema.metadata)
    published = publish.run(["--warehouse", copy, "--tables", "answers"])
    assert published.rows == {"answers": 10}
    rolled = publish.rollback(["--warehouse", copy, "--tables", "answers"])
    assert rolled.versions == {"answers": first["answers"]}
    assert lance.dataset(lance_io.table_uri(copy, "answers"), version=lance_io.PUBLISHED_TAG).count_rows() == answers.num_rows


def test_publish_names_unknown_tables_and_empty_warehouses(tmp_path):
    with pytest.raises(InputError, match="unknown tables"):
        publish.run(["--warehouse", str(tmp_path), "--tables", "userz"])
    with pytest.raises(InputError, match="no recqa tables"):
        publish.run(["--warehouse", str(tmp_path)])
