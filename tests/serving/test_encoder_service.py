"""Which encoder the question path gets: ONNX where its export holds, PyTorch otherwise."""

import threading

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from features.errors import TableContractError
from encoding.onnx_encoder import OnnxEncoder
from serving.encoder_service import IdleFirstEncoder, load_query_encoder


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
