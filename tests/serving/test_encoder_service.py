"""Which encoder the question path gets: ONNX where its export holds, PyTorch otherwise."""

import threading

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from features.errors import TableContractError
from encoding.onnx_encoder import OnnxEncoder
from serving.encoder_service import IdleFirstEncoder, SizeRoutedEncoder, load_batch_encoder, load_query_encoder


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
def test_bf16_batches_run_pytorch_in_bfloat16_close_to_the_questions_model():
    import torch

    questions = load_query_encoder("all-MiniLM-L6-v2", "onnx", 1)
    routed = load_batch_encoder("all-MiniLM-L6-v2", "onnx", 1, "bf16")
    assert isinstance(routed, SizeRoutedEncoder) and isinstance(routed.small, OnnxEncoder) and routed.large.precision == "bf16"
    assert next(routed.large._model.parameters()).dtype == torch.bfloat16
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


class Recording:
    """An encoder that records its calls and can be held mid-encode."""

    def __init__(self, name="m", dimension=3, hold: threading.Event | None = None) -> None:
        self.name, self.dimension, self.calls, self._hold = name, dimension, [], hold
        self.started = threading.Event()

    def encode(self, texts):
        self.calls.append(list(texts))
        self.started.set()
        if self._hold is not None:
            self._hold.wait(10)
        return np.zeros((len(texts), self.dimension), dtype=np.float32)


def test_a_lone_question_is_encoded_locally_and_one_arriving_meanwhile_is_batched():
    release = threading.Event()
    local, batched, paths = Recording(hold=release), Recording(), []
    encoder = IdleFirstEncoder(local, batched, paths.append)
    first = threading.Thread(target=encoder.encode, args=(["first"],))
    first.start()
    assert local.started.wait(10)
    encoder.encode(["second"])  # the first is still being encoded here
    release.set()
    first.join(10)
    encoder.encode(["third"])  # idle again
    assert local.calls == [["first"], ["third"]] and batched.calls == [["second"]]
    assert paths == ["local", "batched", "local"]


def test_a_local_encoder_unlike_the_batched_one_is_refused():
    with pytest.raises(TableContractError, match="differs"):
        IdleFirstEncoder(Recording(dimension=4), Recording(dimension=3))
