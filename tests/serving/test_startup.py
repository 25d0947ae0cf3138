"""Each job `RecQA.__init__` does, alone: BLAS limits, metrics, the encoder choice, the served state."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from serving.encoder_service import IdleFirstEncoder, LazyEncoder
from serving.settings import ServiceSettings
from serving.startup import (
    SERVED_VERSION_METRIC,
    QueryEncoders,
    ServedState,
    choose_encoders,
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
    local = metrics.question_encodes.labels(path="local")
    before = (hits._value.get(), local._value.get())
    metrics.count_lookup(True)
    metrics.count_lookup(False)
    metrics.count_encode("local")
    assert (hits._value.get(), local._value.get()) == (before[0] + 1, before[1] + 1)


def test_served_versions_are_one_gauge_line_per_served_table():
    text = served_versions_text({"users": 3, "items": 4})
    assert f'{SERVED_VERSION_METRIC}{{table="users"}} 3\n' in text and f'{SERVED_VERSION_METRIC}{{table="items"}} 4\n' in text
    assert f"# TYPE {SERVED_VERSION_METRIC} gauge" in text
    assert "{table=" not in served_versions_text({})  # nothing served: the type, no stale series


def test_without_local_encoding_questions_are_batched_and_the_model_loads_on_the_first_write():
    batched, local, paths = Fixed(), Fixed(), []
    loads = []
    encoders = choose_encoders(ServiceSettings(encode_locally_when_idle=False), batched, lambda: loads.append(1) or local, paths.append)
    assert encoders.questions is batched and isinstance(encoders.writes.inner, LazyEncoder) and loads == []
    encoders.writes.encode(["a write"])
    encoders.writes.encode(["another"])
    assert loads == [1] and local.calls == 2 and batched.calls == 0


def test_with_local_encoding_the_model_loads_now_and_an_idle_question_is_encoded_here():
    batched, local, paths = Fixed(), Fixed(), []
    loads = []
    encoders = choose_encoders(ServiceSettings(encode_locally_when_idle=True), batched, lambda: loads.append(1) or local, paths.append)
    assert loads == [1] and isinstance(encoders.questions, IdleFirstEncoder) and encoders.writes.inner is local
    encoders.questions.encode(["a lone question"])
    assert paths == ["local"] and local.calls == 1 and batched.calls == 0


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


def test_with_bf16_batches_writes_go_through_the_batch_model_and_lone_questions_stay_local():
    batched, local, bf16, paths = Fixed(), Fixed(), Fixed(), []
    loads = []
    encoders = choose_encoders(ServiceSettings(encode_locally_when_idle=True, encoder_precision="bf16"), batched,
                               lambda: loads.append("local") or local, paths.append, lambda small: loads.append(("bf16", small)) or bf16)
    assert loads == ["local", ("bf16", local)]  # loaded at start, reusing the local model for small calls
    encoders.questions.encode(["a lone question"])
    encoders.writes.encode(["a write"])
    assert paths == ["local"] and local.calls == 1 and bf16.calls == 1 and batched.calls == 0
    quiet = choose_encoders(ServiceSettings(encode_locally_when_idle=False), batched, lambda: local, paths.append,
                            lambda small: loads.append(("bf16", small)) or bf16)
    assert loads[2:] == []  # no local model: the batch model loads on the first write, with its own
    quiet.writes.encode(["another write"])
    assert loads[2:] == [("bf16", None)] and bf16.calls == 2 and local.calls == 1
