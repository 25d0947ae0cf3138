"""Each job `RecQA.__init__` does, alone: BLAS limits, metrics, the encoders, the served state."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ingest.writer import CommitTimings
from serving.encoders import BatchingEncoder
from serving.settings import ServiceSettings
from serving.startup import (
    SERVED_VERSION_METRIC,
    QueryEncoders,
    ServedState,
    limit_blas_threads,
    served_versions_text,
    service_metrics,
)


class Fixed:
    """A tiny encoder: every text becomes the same unit vector; counts its calls."""

    def __init__(self, name: str = "m", dimension: int = 3) -> None:
        self.name, self.dimension, self.calls = name, dimension, 0

    def encode(self, texts):
        self.calls += 1
        return np.tile(np.eye(self.dimension, dtype=np.float32)[0], (len(texts), 1))


def test_blas_runs_one_thread_per_request_thread():
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy here links no BLAS threadpoolctl can limit")
    with threadpool_limits(None):  # restores the process's limits afterwards
        limit_blas_threads()
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_metrics_are_made_once_per_process_and_count_by_label(service_app):  # service_app: the session's metrics directory
    metrics = service_metrics()
    assert service_metrics() is metrics
    hits = metrics.cache_lookups.labels(result="hit")
    before = (hits._value.get(), metrics.question_batches._sum.get())
    metrics.count_lookup(True)
    metrics.count_lookup(False)
    metrics.observe_batch(5)
    assert (hits._value.get(), metrics.question_batches._sum.get()) == (before[0] + 1, before[1] + 5)
    stages = {stage: metrics.ingest_commit_seconds.labels(stage=stage) for stage in ("queued", "ahead", "append")}
    before = (metrics.ingest_commit_records._sum.get(), {stage: m._sum.get() for stage, m in stages.items()})
    metrics.observe_commit(CommitTimings(records=7, queued=0.25, ahead=0.5, append=0.125))
    assert metrics.ingest_commit_records._sum.get() == pytest.approx(before[0] + 7)
    assert {stage: m._sum.get() - before[1][stage] for stage, m in stages.items()} == pytest.approx({"queued": 0.25, "ahead": 0.5, "append": 0.125})


def test_served_versions_are_one_gauge_line_per_served_table():
    text = served_versions_text({"users": 3, "items": 4})
    assert f'{SERVED_VERSION_METRIC}{{table="users"}} 3\n' in text and f'{SERVED_VERSION_METRIC}{{table="items"}} 4\n' in text
    assert f"# TYPE {SERVED_VERSION_METRIC} gauge" in text
    assert "{table=" not in served_versions_text({})  # nothing served: the type, no stale series


def test_one_model_encodes_questions_batched_and_writes_straight_through():
    model, sizes = Fixed(), []
    encoders = QueryEncoders.of(model, sizes.append)
    assert isinstance(encoders.questions, BatchingEncoder) and encoders.writes is model
    encoders.questions.encode(["a lone question"])
    encoders.writes.encode(["a write"])
    assert model.calls == 2 and sizes == [1]  # the write never went through the questions' batches


def test_an_empty_warehouse_is_followed_but_not_ready_naming_what_to_run(tmp_path):
    state = ServedState.start(ServiceSettings(warehouse=str(tmp_path), reload_seconds=60), lambda: QueryEncoders(Fixed(), Fixed()))
    try:
        assert state.follower is not None and state.cache is not None and state.current() is None
        assert "nothing is published" in state.not_ready_reason and "recqa publish" in state.not_ready_reason
    finally:
        state.stop()


def test_a_bad_warehouse_or_encoder_leaves_the_service_up_without_tables_saying_why(tmp_path):
    bad_scheme = ServedState.start(ServiceSettings(warehouse="ftp://host/wh"), lambda: QueryEncoders(Fixed(), Fixed()))
    assert bad_scheme.follower is None and bad_scheme.current() is None and "RECQA_WAREHOUSE" in bad_scheme.not_ready_reason

    def broken() -> QueryEncoders:
        raise OSError("model folder /models/m is missing")

    no_model = ServedState.start(ServiceSettings(warehouse=str(tmp_path)), broken)
    assert no_model.cache is None and no_model.not_ready_reason == "OSError: model folder /models/m is missing"
    no_model.stop()  # nothing to stop: no error either
