"""The composite transforms of the builds, each alone on the real local runner (TestPipeline + assert_that)."""

from __future__ import annotations

import json

import apache_beam as beam
import lance
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from features.errors import InputError
from features.schemas import Interaction
from pipelines import lance_io
from pipelines.transforms import encode
from pipelines.transforms.encode import EncodeTexts
from pipelines.transforms.lance_write import WriteTable
from pipelines.transforms.quality import CheckRejects
from pipelines.transforms.recs import DropDuplicateEvents
from tests.conftest import text_vector

# --- the encode step -------------------------------------------------------------------------


def test_encode_texts_carries_each_key_beside_the_vector_of_its_own_text(text_model):
    rows = [{"doc_id": f"d{i % 7}", "chunk_id": i, "text": f"text number {i}"} for i in range(600)]  # several batches
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        encoded = (
            pipeline
            | beam.Create(rows)
            | beam.Map(lambda row: (row, row["text"]))
            | EncodeTexts("any-model", stage="encode-test")
            | beam.MapTuple(lambda row, vector: (row["doc_id"], row["chunk_id"], tuple(np.round(vector, 6))))
        )
        expected = [(r["doc_id"], r["chunk_id"], tuple(np.round(text_vector(r["text"]), 6))) for r in rows]
        assert_that(encoded, equal_to(expected))


def test_encode_texts_keeps_keys_that_repeat_and_keys_that_are_not_strings(text_model):
    pairs = [(("same", 1), "alpha"), (("same", 1), "beta"), (None, "gamma")]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        encoded = (
            pipeline
            | beam.Create(pairs)
            | EncodeTexts("any-model")
            | beam.MapTuple(lambda key, vector: (key, tuple(np.round(vector, 6))))
        )
        assert_that(encoded, equal_to([(key, tuple(np.round(text_vector(text), 6))) for key, text in pairs]))


def test_encode_texts_loads_the_model_once_per_worker_not_per_batch(text_model):
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        _ = pipeline | beam.Create([(i, f"t{i}") for i in range(3 * encode.MAX_BATCH_SIZE)]) | EncodeTexts("any-model")
    assert text_model.loads == 1  # one DoFn instance on the in-process runner, three or more batches


# --- CheckRejects ------------------------------------------------------------------------------


def _reject(line: int) -> dict:
    return {"file": "events.csv", "line": line, "reason": f"field 'user_id' is empty (line {line})"}


def _inputs(pipeline, valid: int, rejected: int) -> dict[str, beam.PCollection]:
    return {
        "records": pipeline | "Records" >> beam.Create([f"r{i}" for i in range(valid)]),
        "rejects": pipeline | "Rejects" >> beam.Create([_reject(i + 2) for i in range(rejected)]),
    }


def test_check_rejects_passes_within_the_limit_and_writes_the_rejects(tmp_path):
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        checked = _inputs(pipeline, valid=99, rejected=1) | CheckRejects("interactions", 0.01, str(tmp_path))
        assert_that(checked, equal_to([True]))
    lines = (tmp_path / "interactions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [_reject(2)]


def test_check_rejects_writes_no_file_when_nothing_was_rejected(tmp_path):
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        checked = _inputs(pipeline, valid=5, rejected=0) | CheckRejects("items", 0.01, str(tmp_path))
        assert_that(checked, equal_to([True]))
    assert list(tmp_path.iterdir()) == []


def test_check_rejects_fails_the_run_above_the_limit_naming_the_count_and_keeps_the_rejects(tmp_path):
    with pytest.raises(Exception) as failure:
        with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
            _ = _inputs(pipeline, valid=8, rejected=2) | CheckRejects("interactions", 0.1, str(tmp_path))
    message = str(failure.value)
    assert isinstance(failure.value, InputError) or "InputError" in message
    assert "2 of 10 interactions rows rejected" in message and "--max-reject-fraction" in message
    assert len((tmp_path / "interactions.jsonl").read_text().splitlines()) == 2  # on disk although the run failed


def test_check_rejects_fails_when_no_row_is_valid(tmp_path):
    with pytest.raises(Exception, match="no valid documents rows were read"):
        with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
            _ = _inputs(pipeline, valid=0, rejected=1) | CheckRejects("documents", 0.5, str(tmp_path))


# --- DropDuplicateEvents -----------------------------------------------------------------------


def test_drop_duplicate_events_keeps_one_of_each_exact_duplicate_only():
    base = Interaction("u1", "i1", 1_600_000_000.0, "purchase", 1.0)
    near = [
        Interaction("u1", "i1", 1_600_000_000.0, "purchase", 2.0),  # another value
        Interaction("u1", "i1", 1_600_000_001.0, "purchase", 1.0),  # another time
        Interaction("u1", "i1", 1_600_000_000.0, "view", 1.0),  # another event
        Interaction("u2", "i1", 1_600_000_000.0, "purchase", 1.0),  # another user
        Interaction("u1", "i1", 1_600_000_000.0, None, None),
    ]
    events = [base, base, base, *near, near[-1]]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        unique = pipeline | beam.Create(events) | DropDuplicateEvents()
        assert_that(unique, equal_to([base, *near]))


def test_drop_duplicate_events_counts_the_unique_events_for_the_summary():
    events = [Interaction("u", f"i{i % 3}", 0.0) for i in range(9)]
    pipeline = test_pipeline.TestPipeline(runner="FnApiRunner")
    _ = pipeline | beam.Create(events) | DropDuplicateEvents()
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_name("unique"))["counters"]
    assert sum(c.committed for c in counters) == 3


# --- WriteTable --------------------------------------------------------------------------------

SCHEMA = pa.schema([pa.field("item_id", pa.string()), pa.field("popularity", pa.int64())])


def _schema_of(row: dict) -> pa.Schema:
    return SCHEMA


def _physical_rows(written: list) -> int:
    return sum(json.loads(fragment)["physical_rows"] for _, fragment in written)


def test_write_table_writes_fragments_that_one_commit_makes_the_table(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"item_id": f"i{i}", "popularity": i} for i in range(2_500)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        written = pipeline | beam.Create(rows) | WriteTable(warehouse, "things", _schema_of)
        versions = written | beam.Map(lambda w: lance_io.commit_fragments(warehouse, "things", w))
        assert_that(versions, equal_to([1]))
    table = lance.dataset(f"{warehouse}/things.lance").to_table()
    assert table.schema.equals(SCHEMA)
    assert sorted(table.to_pylist(), key=lambda r: r["popularity"]) == rows


def test_write_table_makes_no_version_before_the_commit(tmp_path):
    warehouse = str(tmp_path)
    rows = [{"item_id": f"i{i}", "popularity": i} for i in range(1_500)]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as pipeline:
        written = pipeline | beam.Create(rows) | WriteTable(warehouse, "things", _schema_of)
        assert_that(written | beam.Map(lambda w: (len({s for s, _ in w}), _physical_rows(w))), equal_to([(1, len(rows))]))
    assert lance_io.dataset(warehouse, "things") is None  # fragments on disk, nothing committed: no visible table
