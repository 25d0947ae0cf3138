"""build-recs and build-qa on a parallel runner, tables on S3 (moto on 127.0.0.1), equal to the local runner's.

The runner is Beam's multi-process local runner (`--direct_num_workers=2
--direct_running_mode=multi_processing`): workers in separate processes, each with its own
model, writing fragments to the object store that one commit then names. Flink and Spark
are not here: their job servers (`org.apache.beam:beam-runners-flink-*-job-server`,
`beam-runners-spark-3-job-server`) are not served by the Maven registry this project can
reach (issue 17 says what was tried).

Reference: the session `warehouse`, built by the local runner from the same bundled data.
"""

from __future__ import annotations

import logging
import os

import boto3
import lance
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.io.filesystems import FileSystems
from moto.server import ThreadedMotoServer

from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, META_CANDIDATE, META_FIT, USERS_TABLE
from pipelines import build_qa, build_recs, lance_io
from registry.log import read_releases
from tests.conftest import MS_CATALOG, MS_USAGE, STACKFAQ

pytestmark = pytest.mark.slow

BUCKET = "recqa-runners"
PARALLEL = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
KEYS = {USERS_TABLE: ("user_id",), ITEMS_TABLE: ("item_id",), ANSWERS_TABLE: ("doc_id", "chunk_id")}
# Text vectors: the same model on the same texts, batched differently per runner, agree to this.
TEXT_TOLERANCE = 1e-5
# ALS: one fit on one worker from the same seed over the same (sorted) matrix, so bit-equal is
# expected; the tolerance only absorbs BLAS summation order.
ALS_TOLERANCE = 1e-6
PER_RUN_METADATA = {META_CANDIDATE, META_FIT}  # ids each build draws anew


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch):
    """An S3 server on loopback; its endpoint and credentials in the environment the worker processes inherit."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        # the workers import recqa as this test does (a worktree or checkout ahead of the installed package)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(MS_USAGE.parents[2]), os.environ.get("PYTHONPATH")])),
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}/warehouse"
    FileSystems.set_options(None)
    server.stop()


@pytest.fixture
def beam_results(monkeypatch: pytest.MonkeyPatch) -> list:
    """The Beam results of the builds run in the test (for their counters), in order."""
    results = []
    for module in (build_recs, build_qa):
        original = module.stage_rows

        def recording(result, original=original):
            results.append(result)
            return original(result)

        monkeypatch.setattr(module, "stage_rows", recording)
    return results


def _counter(result, name: str) -> int:
    return sum(int(c.committed or c.attempted or 0) for c in result.metrics().query()["counters"] if c.key.metric.name == name)


def _published(warehouse: str, name: str) -> lance.LanceDataset:
    return lance.dataset(lance_io.table_uri(warehouse, name), version=read_releases(warehouse).current.tables[name])


def _sorted(ds: lance.LanceDataset, name: str) -> pa.Table:
    return ds.to_table().sort_by([(key, "ascending") for key in KEYS[name]])


def _indexes(ds: lance.LanceDataset) -> set[tuple[str, tuple[str, ...]]]:
    return {(index["type"], tuple(index["fields"])) for index in ds.list_indices()}


def assert_same_table(reference: lance.LanceDataset, built: lance.LanceDataset, name: str, vector_tolerance: dict[str, float]) -> None:
    """Same schema, rows, ids and values; vector columns within their tolerance; same indexes and metadata."""
    assert built.schema.remove_metadata() == reference.schema.remove_metadata()
    ours, theirs = _sorted(built, name), _sorted(reference, name)
    assert ours.num_rows == theirs.num_rows
    for column in ours.column_names:
        if column in vector_tolerance:
            difference = np.abs(np.stack(ours.column(column).to_numpy(zero_copy_only=False))
                                - np.stack(theirs.column(column).to_numpy(zero_copy_only=False)))
            assert difference.max() <= vector_tolerance[column], f"{name}.{column}: max |difference| {difference.max()}"
        else:
            assert ours.column(column).to_pylist() == theirs.column(column).to_pylist(), f"{name}.{column} differs"
    same_meta = {k: v for k, v in (built.schema.metadata or {}).items() if k not in PER_RUN_METADATA}
    assert same_meta == {k: v for k, v in (reference.schema.metadata or {}).items() if k not in PER_RUN_METADATA}
    assert _indexes(built) == _indexes(reference)


def test_build_recs_on_parallel_workers_writes_the_local_runners_tables_to_s3(s3, warehouse, beam_results, usage_rows):
    result = build_recs.run(["--warehouse", s3, "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG), *PARALLEL])

    # one commit per table on a fresh warehouse, and no indexes added on top of it at this size
    assert result.versions == {USERS_TABLE: 1, ITEMS_TABLE: 1}
    assert "no rejects" in result.summary() and not (warehouse / "_rejects").exists()  # the same rejects: none on either
    for name in (USERS_TABLE, ITEMS_TABLE):
        reference = _published(str(warehouse), name)
        tolerance = {"vector": ALS_TOLERANCE, "content_vector": TEXT_TOLERANCE}
        assert_same_table(reference, lance_io.dataset(s3, name), name, tolerance)
    (beam_result,) = beam_results
    assert _counter(beam_result, "read") >= len(usage_rows)  # every event row reached the workers (plus the catalogue's)


def test_build_qa_on_parallel_workers_loads_the_model_once_per_worker(s3, warehouse, beam_results):
    result = build_qa.run(["--warehouse", s3, "--documents", str(STACKFAQ), *PARALLEL])

    assert result.versions == {ANSWERS_TABLE: 2}  # the commit, then the BM25 index on it
    assert "no rejects" in result.summary() and not (warehouse / "_rejects").exists()
    assert_same_table(_published(str(warehouse), ANSWERS_TABLE), lance_io.dataset(s3, ANSWERS_TABLE), ANSWERS_TABLE,
                      {"vector": TEXT_TOLERANCE})
    (beam_result,) = beam_results
    loads, batches = _counter(beam_result, "model_loads"), _counter(beam_result, "written")
    assert 1 <= loads <= 2 < batches  # one per worker process (2), never one per bundle
