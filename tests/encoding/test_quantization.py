"""The quality gate measures a quantized encoder against fp32 and refuses one that misses."""

import json

import numpy as np
import pytest

from encoding.quantization import GATE_TEXTS, QuantizationRefused, gate_texts, quality_gate, require_gate


class Fixed:
    """Unit vectors given up front, one row per text, in the order of the texts asked."""

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._vectors[: len(texts)]


def _pair(noise: float, rows: int = 1000, seed: int = 0) -> tuple[Fixed, Fixed]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, 384))
    return Fixed(base), Fixed(base + noise * rng.standard_normal((rows, 384)))


def test_a_perturbed_encoder_is_refused_with_its_figures():
    reference, perturbed = _pair(noise=0.2)  # cosine about 0.98 per text: under 0.99 for nearly all
    texts = [f"text {i}" for i in range(1000)]
    result = quality_gate(reference, perturbed, texts)
    assert not result.passed and result.share_above < 0.99 and result.min < result.p1 <= result.mean < 0.99
    with pytest.raises(QuantizationRefused, match=rf"mean {result.mean:.4f}, min {result.min:.4f}, 1st percentile {result.p1:.4f}"):
        require_gate(reference, perturbed, texts)


def test_an_encoder_within_the_threshold_passes():
    reference, close = _pair(noise=0.02)  # cosine about 0.9998
    result = require_gate(reference, close, [f"text {i}" for i in range(1000)])
    assert result.passed and result.share_above == 1.0 and result.min >= 0.99


def test_one_text_in_a_hundred_below_the_threshold_still_passes_two_do_not():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((1000, 384))
    texts = [str(i) for i in range(1000)]
    for bad, passes in ((10, True), (11, False)):
        moved = base.copy()
        moved[:bad] = rng.standard_normal((bad, 384))  # unrelated vectors: cosine near 0
        assert quality_gate(Fixed(base), Fixed(moved), texts).passed is passes


def test_the_gate_needs_texts():
    reference, _ = _pair(noise=0.0, rows=1)
    with pytest.raises(ValueError, match="needs texts"):
        quality_gate(reference, reference, [])


def test_gate_texts_are_real_stackfaq_answers_and_half_beir_abstracts_when_given(tmp_path):
    bundled = gate_texts()
    assert len(bundled) == GATE_TEXTS == len(set(bundled))
    assert all(text.strip() for text in bundled)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": str(i), "title": f"T{i}", "text": f"abstract {i}"}) + "\n" for i in range(800)))
    mixed = gate_texts(beir_corpus=corpus)
    assert len(mixed) == GATE_TEXTS
    assert sum(text.startswith("T") and "abstract" in text for text in mixed) == GATE_TEXTS // 2
    assert mixed[: GATE_TEXTS // 2] == bundled[: GATE_TEXTS // 2]


def test_an_unknown_quantization_is_refused_before_any_model_loads():
    from encoding.onnx_encoder import OnnxEncoder
    from tests.conftest import FakeEncoder

    with pytest.raises(ValueError, match="'int4' is not one of"):
        OnnxEncoder(FakeEncoder(), quantize="int4")


def _block(path, names=("square", "up", "down")) -> None:
    """A transformer-like block as ONNX: x (n, 8) -> MatMul square (8 x 8, as attention's
    projections) -> MatMul up (8 x 32) -> Relu -> MatMul down (32 x 8)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), f"w{i}") for i, shape in enumerate(((8, 8), (8, 32), (32, 8)))]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w0"], ["s"], name=names[0]),
            helper.make_node("MatMul", ["s", "w1"], ["h"], name=names[1]),
            helper.make_node("Relu", ["h"], ["a"], name="act"),
            helper.make_node("MatMul", ["a", "w2"], ["y"], name=names[2]),
        ],
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        initializer=weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_int8_quantizes_the_square_and_widening_matmuls_and_keeps_the_down_projection_in_fp32(tmp_path):
    import onnx
    import onnxruntime

    from encoding.quantization import down_projections, quantize_matmul_int8

    source = tmp_path / "block.onnx"
    _block(source)
    assert down_projections(onnx.load(str(source))) == ["down"]
    target = quantize_matmul_int8(source, tmp_path / "block.int8.onnx")
    nodes = {node.name: node.op_type for node in onnx.load(str(target)).graph.node}
    assert nodes.get("down") == "MatMul"  # untouched: fp32 weights
    assert nodes.get("up") != "MatMul" and nodes.get("square") != "MatMul"  # each replaced by an integer MatMul
    assert sum(op in ("MatMulInteger", "DynamicQuantizeMatMul") for op in nodes.values()) == 2
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    run = lambda path: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact, quantized = run(source), run(target)
    assert not np.array_equal(exact, quantized)  # int8 weights somewhere
    assert np.allclose(exact, quantized, rtol=0.1, atol=0.5)  # yet the same block


@pytest.mark.parametrize("names", [("square", "", "down"), ("same", "same", "down")])
def test_int8_refuses_a_graph_whose_matmuls_cannot_be_told_apart_by_name(tmp_path, names):
    import onnx

    from encoding.quantization import down_projections

    source = tmp_path / "block.onnx"
    _block(source, names)
    with pytest.raises(ValueError, match="without a name or with one name twice"):
        down_projections(onnx.load(str(source)))
