"""The builds encode with the service's ONNX graph or PyTorch, and bf16 or int8 only past the quality gate."""

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
        assert (args.encoder_backend, args.quantize, args.device, rest) == ("torch", None, "cpu", [])


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


def test_bf16_on_the_onnx_backend_and_cuda_on_onnx_are_refused_naming_the_flag(tmp_path, fake_model):
    from pipelines import build_qa

    documents = str(_documents(tmp_path))
    with pytest.raises(ValueError, match="--quantize bf16 needs --encoder-backend torch"):
        build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", documents, "--quantize", "bf16", "--encoder-backend", "onnx"])
    with pytest.raises(ValueError, match="--device cuda needs --encoder-backend torch"):
        build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", documents, "--device", "cuda", "--encoder-backend", "onnx"])
    assert not (tmp_path / "wh").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present: the refusal cannot happen")
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path, fake_model):
    from pipelines import build_qa

    with pytest.raises(ValueError, match=r"--device cuda: PyTorch sees no CUDA device here .*drop --device"):
        build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--device", "cuda"])
    assert not (tmp_path / "wh").exists()  # no table, no candidates table, no snapshot tag


class PrecisionEncoder:
    """In the place of the model: records the precision each load asked for; bf16 adds a little noise."""

    precisions: list[str] = []

    def __init__(self, name: str = "all-MiniLM-L6-v2", precision: str = "fp32") -> None:
        self.name = name
        self.precision = precision
        PrecisionEncoder.precisions.append(precision)

    def load(self) -> "PrecisionEncoder":
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.stack([text_vector(t) for t in texts])
        if self.precision == "bf16":
            vectors = vectors + 0.01 * np.stack([text_vector(t + "#") for t in texts])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_a_bf16_build_runs_the_gate_against_fp32_then_encodes_in_bf16(tmp_path, monkeypatch, capfd):
    from pipelines import build_qa
    from pipelines.transforms import encode

    PrecisionEncoder.precisions = []
    monkeypatch.setattr(encode, "SentenceTransformerEncoder", PrecisionEncoder)
    build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--quantize", "bf16"])
    assert PrecisionEncoder.precisions[:2] == ["fp32", "bf16"]  # the gate: reference, then candidate
    assert set(PrecisionEncoder.precisions[2:]) == {"bf16"}  # every worker encodes in bf16
    assert "quality gate passed on 1000 texts" in capfd.readouterr().err
    table = lance.dataset(str(tmp_path / "wh" / f"{ANSWERS_TABLE}.lance")).to_table()
    stored = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    expected = PrecisionEncoder(precision="bf16").encode(table.column("text").to_pylist())
    np.testing.assert_allclose(stored, expected, atol=1e-6)


def test_a_bf16_build_whose_gate_fails_is_refused_with_the_figures(tmp_path, monkeypatch):
    from encoding.quantization import QuantizationRefused
    from pipelines import build_qa
    from pipelines.transforms import encode

    class FarEncoder(PrecisionEncoder):
        def encode(self, texts):
            if self.precision == "fp32":
                return super().encode(texts)
            return NoisyEncoder().encode(texts)

    monkeypatch.setattr(encode, "SentenceTransformerEncoder", FarEncoder)
    with pytest.raises(QuantizationRefused, match=r"--quantize bf16 refused: quality gate FAILED on 1000 texts"):
        build_qa.run(["--warehouse", str(tmp_path / "wh"), "--documents", str(_documents(tmp_path)), "--quantize", "bf16"])
    assert not (tmp_path / "wh" / f"{ANSWERS_TABLE}.lance").exists()
