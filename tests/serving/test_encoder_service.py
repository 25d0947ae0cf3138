"""Which encoder the question path gets: ONNX where its export holds, PyTorch otherwise."""

import pytest

from features.encoders import SentenceTransformerEncoder
from features.onnx_encoder import OnnxEncoder
from serving.encoder_service import load_query_encoder


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
