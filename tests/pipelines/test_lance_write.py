"""A retried bundle never commits its rows twice (pipelines/transforms/lance_write.py)."""

from __future__ import annotations

import os

import apache_beam as beam
import lance
import pyarrow as pa
import pytest

from pipelines import lance_io
from pipelines.transforms.lance_write import WriteFragmentsDoFn, WriteTable, checked_fragments

SCHEMA = pa.schema([("id", pa.string()), ("x", pa.float64())])


def _schema_of(row: dict) -> pa.Schema:
    return SCHEMA


def _attempt(warehouse: str, rows: list[dict]) -> list[tuple[pa.Schema, str]]:
    """One attempt of a bundle: the fragments it writes and the descriptions it outputs."""
    fn = WriteFragmentsDoFn(warehouse, "t", _schema_of)
    fn.setup()
    return list(fn.process(rows))


def _data_files(warehouse: str) -> set[str]:
    return set(os.listdir(os.path.join(lance_io.table_uri(warehouse, "t"), "data")))


def test_a_retried_bundle_commits_its_rows_once_and_leaves_the_first_attempts_files_unreferenced(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"id": str(i), "x": float(i)} for i in range(10)]
    _attempt(warehouse, rows)  # the worker died after writing: the engine drops this attempt's outputs
    retried = _attempt(warehouse, rows)
    lance_io.commit_fragments(warehouse, "t", checked_fragments(retried, len(rows), table="t"))

    committed = lance.dataset(lance_io.table_uri(warehouse, "t")).to_table()
    assert sorted(committed.column("id").to_pylist()) == sorted(r["id"] for r in rows)
    referenced = {f.data_files()[0].path for f in lance.dataset(lance_io.table_uri(warehouse, "t")).get_fragments()}
    assert len(_data_files(warehouse)) == 2 and len(referenced) == 1  # the first attempt's file is written but never named


def test_both_attempts_delivered_are_refused_before_any_commit(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"id": str(i), "x": float(i)} for i in range(10)]
    both = _attempt(warehouse, rows) + _attempt(warehouse, rows)
    with pytest.raises(RuntimeError, match=r"refusing to commit 't': its 2 fragments hold 20 rows but the pipeline produced 10"):
        checked_fragments(both, len(rows), table="t")
    assert lance_io.dataset(warehouse, "t") is None  # no version was created


def test_a_fragment_description_delivered_twice_is_committed_once(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"id": str(i), "x": float(i)} for i in range(4)]
    (written,) = _attempt(warehouse, rows)
    assert checked_fragments([written, written], 4, table="t") == [written]


def test_write_table_in_a_real_pipeline_gathers_exactly_the_rows(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"id": str(i), "x": float(i)} for i in range(2_500)]
    with beam.Pipeline() as pipeline:
        written = pipeline | beam.Create(rows) | WriteTable(warehouse, "t", _schema_of)
        _ = written | beam.Map(lambda w: lance_io.commit_fragments(warehouse, "t", w))
    table = lance.dataset(lance_io.table_uri(warehouse, "t")).to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in rows)
