"""The builds encode with the service's ONNX graph or PyTorch, and int8 only past the quality gate."""

import json

import lance
import numpy as np
import pytest

from features.schemas import ANSWERS_TABLE, META_DIMENSION, META_ENCODER
from tests.conftest import TEXT_VECTOR_DIMENSION, text_vector

THREADS = [
    {"question": "How do I cross out text?", "answer": ["Wrap it in <s> tags or use ~~two tildes~~ in Markdown."], "rephr": ["strike text"]},
    {"question": "Can I undo a vote?", "answer": ["Votes lock after five minutes unless the post is edited.", "Größe ändern 🙂 — votes are final."]},
    {"question": "Why was my question closed?", "answer": ["word " * 300]},
]


def _documents(tmp_path):
    path = tmp_path / "faq.json"
    path.write_text(json.dumps({"root": {"qapair": THREADS}}))
    return path


class NoisyEncoder:
    """In the place of the model: each instance adds its own noise, so two loads (fp32, int8) disagree."""

    made = 0

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        self.name = name
        NoisyEncoder.made += 1
        self._rng = np.random.default_rng(NoisyEncoder.made)

    def load(self) -> "NoisyEncoder":
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.stack([text_vector(t) for t in texts]) + 0.2 * self._rng.standard_normal((len(texts), TEXT_VECTOR_DIMENSION))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_a_quantized_build_whose_gate_fails_is_refused_with_the_figures(tmp_path, monkeypatch):
    from encoding.quantization import QuantizationRefused
    from pipelines import build_qa
    from pipelines.transforms import encode

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", NoisyEncoder)
    argv = ["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--quantize", "int8", "--encoder-backend", "onnx"]
    with pytest.raises(QuantizationRefused, match=r"--quantize int8 refused: .*mean 0\.\d+, min .*1st percentile"):
        build_qa.run(argv)
    assert not (tmp_path / "wh" / f"{ANSWERS_TABLE}.lance").exists()


def test_a_quantized_build_whose_gate_passes_writes_its_tables(tmp_path, text_model):
    from pipelines import build_qa

    build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--quantize", "int8", "--encoder-backend", "onnx"])
    assert lance.dataset(str(tmp_path / "wh" / f"{ANSWERS_TABLE}.lance")).count_rows() >= 4


def test_int8_on_the_torch_backend_is_refused_naming_the_flag(tmp_path, fake_model):
    from pipelines import build_recs

    with pytest.raises(ValueError, match="--quantize int8 needs --encoder-backend onnx"):
        build_recs.run(["--warehouse", str(tmp_path), "--quantize", "int8", "--encoder-backend", "torch"])


def test_the_backend_flags_default_to_torch_fp32():
    from pipelines import build_qa, build_recs

    for module in (build_qa, build_recs):
        args, rest = module.parse_args([])
        assert (args.encoder_backend, args.quantize, rest) == ("torch", None, [])


@pytest.mark.slow
def test_onnx_built_vectors_are_pytorchs_and_serving_accepts_the_table(tmp_path, monkeypatch):
    from encoding.sentence_transformer import SentenceTransformerEncoder
    from pipelines import build_qa
    from pipelines.transforms import encode
    from serving.tables import check_encoder

    loaded = []

    class SeenOnnxEncoder(encode.OnnxEncoder):
        def load(self):
            loaded.append(self.quantize)
            return super().load()

    monkeypatch.setattr(encode, "OnnxEncoder", SeenOnnxEncoder)
    build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--encoder-backend", "onnx"])
    assert loaded and set(loaded) == {None}  # the build encoded through the fp32 ONNX graph
    dataset = lance.dataset(str(tmp_path / "wh" / f"{ANSWERS_TABLE}.lance"))
    table = dataset.to_table()
    model = SentenceTransformerEncoder()
    expected = model.encode(table.column("text").to_pylist())
    stored = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    assert stored.shape == expected.shape == (table.num_rows, 384)
    assert float(np.max(1.0 - np.sum(stored * expected, axis=1))) <= 1e-4
    assert table.schema.metadata[META_ENCODER] == b"all-MiniLM-L6-v2"
    assert table.schema.metadata[META_DIMENSION] == b"384"

    class Opened:  # what check_encoder reads of an opened table
        name = ANSWERS_TABLE
        schema = table.schema

    check_encoder(Opened(), model)  # raises on a model or dimension mismatch
