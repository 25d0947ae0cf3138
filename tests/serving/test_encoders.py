"""The question encoders: ONNX where its export holds, PyTorch otherwise; concurrent questions batched."""

import os
import threading
import time

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from features.errors import TableContractError
from encoding.onnx_encoder import OnnxEncoder
from encoding.traced_encoder import TracedEncoder
from serving import encoders
from serving.encoders import (
    MAX_LANES,
    BatchingEncoder,
    SizeRoutedEncoder,
    available_cores,
    batch_precision,
    encoder_lanes,
    load_batch_encoder,
    load_query_encoder,
)


def test_an_unknown_backend_is_refused_by_name():
    with pytest.raises(ValueError, match="RECQA_ENCODER_BACKEND"):
        load_query_encoder("all-MiniLM-L6-v2", "tensorrt", 1)


@pytest.mark.slow
def test_onnx_by_default_and_pytorch_when_the_export_fails(monkeypatch, caplog):
    assert isinstance(load_query_encoder("all-MiniLM-L6-v2", "onnx", 1), OnnxEncoder)
    assert isinstance(load_query_encoder("all-MiniLM-L6-v2", "torch", 1), SentenceTransformerEncoder)

    def broken(self):
        raise RuntimeError("export failed")

    monkeypatch.setattr(OnnxEncoder, "load", broken)
    encoder = load_query_encoder("all-MiniLM-L6-v2", "onnx", 1)
    assert isinstance(encoder, SentenceTransformerEncoder)
    assert "export failed" in caplog.text
    assert encoder.encode(["still works"]).shape == (1, 384)


@pytest.mark.slow
def test_bf16_batches_run_a_traced_bfloat16_graph_close_to_the_questions_model():
    import torch

    questions = load_query_encoder("all-MiniLM-L6-v2", "onnx", 1)
    routed = load_batch_encoder("all-MiniLM-L6-v2", "onnx", 1, "bf16", wide_threads=2)
    assert isinstance(routed, SizeRoutedEncoder) and isinstance(routed.small, OnnxEncoder)
    lone = encoders.lone_encoder(routed)  # a lone question: the questions' ONNX graph on two threads
    assert lone is not None and np.allclose(lone.encode(["quokka"]), questions.encode(["quokka"]), atol=1e-5)
    assert isinstance(routed.large, TracedEncoder) and routed.large.precision == "bf16"
    assert isinstance(routed.large._graph, torch.jit.ScriptModule)
    assert next(routed.large._source._model.parameters()).dtype == torch.bfloat16
    texts = ["How do I cross out text on GitHub?", "Which tea is best steeped for three minutes at 80 degrees?", "quokka", "a fourth"]
    got, want = routed.encode(texts), questions.encode(texts)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(axis=1).min() >= 0.99
    assert isinstance(load_batch_encoder("all-MiniLM-L6-v2", "onnx", 1, "fp32"), OnnxEncoder)  # fp32: the questions' model


def test_calls_under_the_threshold_go_to_the_small_model_and_the_rest_to_the_large():
    small, large = Recording(), Recording()
    routed = SizeRoutedEncoder(small, large, 4)
    routed.encode(["a", "b", "c"])
    routed.encode(["a", "b", "c", "d"])
    assert [len(c) for c in small.calls] == [3] and [len(c) for c in large.calls] == [4]
    with pytest.raises(TableContractError):
        SizeRoutedEncoder(small, Recording(dimension=5), 4)


def test_an_unknown_batch_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="RECQA_ENCODER_PRECISION"):
        load_batch_encoder("all-MiniLM-L6-v2", "onnx", 1, "int4")


@pytest.mark.parametrize(
    ("choice", "otherwise", "native", "expected"),
    [
        ("auto", "fp32", True, "bf16"),  # a CPU with AMX or AVX512-BF16: bf16 whatever the service's questions use
        ("auto", "fp32", False, "fp32"),  # emulated bf16 is slower: the service's own precision
        ("auto", "bf16", False, "bf16"),
        ("fp32", "bf16", True, "fp32"),  # named: as named
        ("bf16", "fp32", False, "bf16"),
    ],
)
def test_the_writes_precision_is_bf16_only_where_the_cpu_runs_it_unless_named(choice, otherwise, native, expected):
    assert batch_precision(choice, otherwise, native) == expected


def test_an_unknown_writes_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="RECQA_INGEST_PRECISION"):
        batch_precision("int8", "fp32", True)


class Recording:
    """An encoder that records its calls, can be held mid-encode, and encodes a text as
    (its length, its first character's code, 1) so each caller's rows can be told apart."""

    def __init__(self, name="m", dimension=3, hold: threading.Event | None = None) -> None:
        self.name, self.dimension, self.calls, self._hold = name, dimension, [], hold
        self.started = threading.Event()

    def encode(self, texts):
        self.calls.append(list(texts))
        self.started.set()
        if self._hold is not None:
            self._hold.wait(10)
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, :3] = _vectors(texts)
        return vectors


def _vectors(texts):
    """What `Recording` encodes each text as."""
    return np.asarray([(len(t), ord(t[0]), 1) for t in texts], dtype=np.float32).reshape(len(texts), 3)


def test_a_lone_question_is_encoded_at_once_and_those_arriving_meanwhile_share_the_next_pass():
    release = threading.Event()
    model, sizes = Recording(hold=release), []
    encoder = BatchingEncoder(model, sizes.append)
    results = {}

    def ask(texts):
        results[texts[0]] = encoder.encode(texts)

    first = threading.Thread(target=ask, args=(["first"],))
    first.start()
    assert model.started.wait(10)  # running alone: it did not wait for company
    waiting = [threading.Thread(target=ask, args=(texts,)) for texts in (["b1", "b22"], ["c333"], ["d4444", "d5", "d66"])]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 10
    while sum(len(group.items) for group in encoder._batcher._gathering.values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # all three gathered behind the running pass
    release.set()
    for thread in [first, *waiting]:
        thread.join(10)
    assert model.calls[0] == ["first"] and len(model.calls) == 2
    assert sorted(model.calls[1]) == sorted(["b1", "b22", "c333", "d4444", "d5", "d66"])  # one pass for the three callers
    assert sizes == [1, 6]
    for texts in (["first"], ["b1", "b22"], ["c333"], ["d4444", "d5", "d66"]):
        assert np.array_equal(results[texts[0]], _vectors(texts))  # each caller gets its own rows, in its order


def test_an_error_of_the_model_reaches_every_caller_of_its_batch_and_the_next_one_runs():
    class Failing(Recording):
        def encode(self, texts):
            if "boom" in texts:
                raise RuntimeError("the model failed")
            return super().encode(texts)

    encoder = BatchingEncoder(Failing())
    with pytest.raises(RuntimeError, match="the model failed"):
        encoder.encode(["boom"])
    assert np.array_equal(encoder.encode(["after"]), _vectors(["after"]))
    assert encoder.encode([]).shape == (0, 3)


def test_a_model_returning_the_wrong_shape_is_refused_naming_it():
    class Short(Recording):
        def encode(self, texts):
            return super().encode(texts)[:-1]

    with pytest.raises(TableContractError, match="returned shape"):
        BatchingEncoder(Short()).encode(["a", "b"])


def test_passes_at_once_are_the_cores_over_the_threads_each_takes_and_a_container_quota_counts(tmp_path, monkeypatch):
    assert [encoder_lanes(threads, cores=2) for threads in (1, 2, 4)] == [2, 1, 1]
    assert encoder_lanes(2, cores=8) == 4 and encoder_lanes(1, cores=64) == MAX_LANES
    # each of the service's processes takes its share: together their passes take the cores once
    assert [encoder_lanes(1, cores=2, workers=workers) for workers in (1, 2, 3)] == [2, 1, 1]
    assert encoder_lanes(1, cores=8, workers=2) == 4 and encoder_lanes(2, cores=8, workers=2) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(encoders, "CGROUP_CPU_MAX", str(cpu_max))
    assert available_cores() == 32  # no cgroup file: the affinity
    cpu_max.write_text("250000 100000\n")  # a container limited to 2.5 CPUs on a 32-core host
    assert available_cores() == 2.5 and encoder_lanes(1) == 2
    cpu_max.write_text("max 100000\n")
    assert available_cores() == 32 and encoder_lanes(1) == MAX_LANES


def test_with_two_lanes_two_questions_are_encoded_side_by_side():
    release = threading.Event()
    model = Recording(hold=release)
    encoder = BatchingEncoder(model, lanes=2)
    first = threading.Thread(target=encoder.encode, args=(["one"],))
    first.start()
    assert model.started.wait(10)
    second = threading.Thread(target=encoder.encode, args=(["two"],))
    second.start()
    deadline = time.monotonic() + 10
    while len(model.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    ran_together = len(model.calls) == 2  # both inside the model before either was let go
    release.set()
    for thread in (first, second):
        thread.join(10)
    assert ran_together and model.calls == [["one"], ["two"]]


def test_a_question_with_the_cores_to_itself_goes_to_the_wide_model_and_the_others_to_their_lanes(monkeypatch):
    monkeypatch.setattr(encoders, "QUIET_SECONDS", 60.0)  # the quiet time passes below by hand, not by sleeping
    release = threading.Event()
    narrow, wide = Recording(), Recording(hold=release)
    encoder = BatchingEncoder(narrow, lanes=2, alone=wide)
    first = threading.Thread(target=encoder.encode, args=(["first"],))
    first.start()
    assert wide.started.wait(10)  # nothing else running: the lone question on every core
    assert np.array_equal(encoder.encode(["second"]), _vectors(["second"]))  # beside it: its own lane's threads
    release.set()
    first.join(10)
    assert wide.calls == [["first"]] and narrow.calls == [["second"]]
    encoder.encode(["third"])  # alone, but two passes ran at once a moment ago: its lane's threads
    assert narrow.calls[-1] == ["third"]
    encoder._crowded_at -= 61.0  # a minute with no two passes at once
    encoder.encode(["a pair", "of texts"])  # a batch keeps to its lane's threads, even alone and quiet
    assert narrow.calls[-1] == ["a pair", "of texts"]
    encoder.encode(["fourth"])  # quiet for longer than QUIET_SECONDS: every core again
    assert wide.calls[-1] == ["fourth"] and len(narrow.calls) == 3


def test_a_wide_model_that_is_not_the_same_model_is_refused():
    with pytest.raises(TableContractError, match="not one model"):
        BatchingEncoder(Recording(), alone=Recording(dimension=5))
    assert encoders.lone_encoder(Recording()) is None  # no ONNX graph: no wide model
