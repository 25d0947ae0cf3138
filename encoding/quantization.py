"""int8 weights for the ONNX graph, and the quality gate that decides whether they may be used.

ONNX Runtime's default dynamic quantization (every supported op, per tensor) moved vectors
far from fp32 (issue 16: cosine 0.94 mean, 0.88 min), so only the MatMul weights are
quantized, per output channel, and not those of the down-projections (a transformer block's
feed-forward output, 1536 -> 384 in all-MiniLM-L6-v2). With them quantized too the gate
failed (98.4% of texts at cosine >= 0.99), without them it passes; keeping the last layer in
fp32 instead did not (benchmarks/RESULTS.md, "Batch encode stage"). The likely reason, not
measured: their input is the GELU's output, whose few large values one per-tensor uint8
scale for the activations cannot hold without flattening the rest. Even so a quantized graph is used only
once `quality_gate` has measured it against fp32 on real texts; the figures go into the
refusal message, so a refused build says by how much it missed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# cosine to fp32 of at least GATE_MIN_COSINE for at least GATE_MIN_SHARE of the texts (issue 16).
GATE_MIN_COSINE = 0.99
GATE_MIN_SHARE = 0.99
GATE_TEXTS = 1000
BUNDLED_STACKFAQ = Path(__file__).resolve().parents[1] / "data" / "stackfaq" / "stackExchange-FAQ.json"


class TextEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


class QuantizationRefused(ValueError):
    """A quantized encoder missed the quality gate; the message carries the measured figures."""


@dataclass(frozen=True)
class GateResult:
    """Cosine of each text's quantized vector to its fp32 vector, summarised."""

    texts: int
    mean: float
    min: float
    p1: float  # 1st percentile: the gate passes when this is >= GATE_MIN_COSINE (for GATE_MIN_SHARE = 0.99)
    share_above: float  # share of texts with cosine >= min_cosine
    min_cosine: float
    min_share: float

    @property
    def passed(self) -> bool:
        return self.share_above >= self.min_share

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"quality gate {verdict} on {self.texts} texts: cosine to fp32 mean {self.mean:.4f}, min {self.min:.4f}, "
            f"1st percentile {self.p1:.4f}; {self.share_above:.1%} of texts >= {self.min_cosine} (needs {self.min_share:.0%})"
        )


def quantize_matmul_int8(source: Path, target: Path) -> Path:
    """Write `source` with its MatMul weights as per-channel int8 (activations quantized at run
    time), the down-projections' weights left in fp32 (`down_projections`).

    `MatMulConstBOnly` pins what ONNX Runtime 1.32 does by default in dynamic mode: the
    attention's products of two activations stay fp32 whatever a later version defaults to."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = down_projections(onnx.load(str(source)))
    quantize_dynamic(
        str(source), str(target), op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
        nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True},
    )
    return target


def down_projections(model) -> list[str]:
    """The names of the MatMul nodes whose constant weight narrows its input (more rows than
    columns): a transformer block's feed-forward output, found by shape so any model of this
    kind is read the same way, whatever its nodes are called.

    ONNX Runtime leaves out nodes by name, so a MatMul without a name of its own would take
    every other such MatMul with it (a graph almost all fp32, recorded as int8): refused."""
    shapes = {weight.name: tuple(weight.dims) for weight in model.graph.initializer}
    matmuls = [(node.name, shapes.get(node.input[1], ())) for node in model.graph.node if node.op_type == "MatMul"]
    names = [name for name, _ in matmuls]
    if "" in names or len(set(names)) < len(names):
        raise ValueError("int8: the ONNX graph has MatMul nodes without a name or with one name twice; "
                         "their fp32 down-projections cannot be told apart: encode without --quantize int8")
    return [name for name, shape in matmuls if len(shape) == 2 and shape[0] > shape[1]]


def quality_gate(
    reference: TextEncoder, candidate: TextEncoder, texts: list[str],
    min_cosine: float = GATE_MIN_COSINE, min_share: float = GATE_MIN_SHARE,
) -> GateResult:
    """Measure `candidate` against `reference` (fp32) on `texts`; both return unit vectors."""
    if not texts:
        raise ValueError("the quality gate needs texts to measure on: pass real texts (gate_texts() gives 1,000)")
    cosine = np.sum(np.asarray(reference.encode(texts), np.float64) * np.asarray(candidate.encode(texts), np.float64), axis=1)
    return GateResult(
        texts=len(texts), mean=float(cosine.mean()), min=float(cosine.min()), p1=float(np.percentile(cosine, 1)),
        share_above=float(np.mean(cosine >= min_cosine)), min_cosine=min_cosine, min_share=min_share,
    )


def require_gate(reference: TextEncoder, candidate: TextEncoder, texts: list[str], what: str = "int8") -> GateResult:
    """`quality_gate`, raising QuantizationRefused with the figures when it fails."""
    result = quality_gate(reference, candidate, texts)
    if not result.passed:
        raise QuantizationRefused(
            f"--quantize {what} refused: {result.describe()}. Build with fp32 (drop --quantize) for this model."
        )
    return result


def gate_texts(stackfaq: Path = BUNDLED_STACKFAQ, beir_corpus: Path | None = None, count: int = GATE_TEXTS) -> list[str]:
    """`count` real texts: StackFAQ answers (then questions and their rephrasings), half of them SciFact-style BEIR abstracts when a corpus is given.

    The bundled StackFAQ file is on every machine, so a build can always run the gate; a BEIR
    corpus (corpus.jsonl) adds long scientific abstracts, the other kind of text the tables hold.
    """
    from features.adapters import stackfaq_queries, stackfaq_records

    data = json.loads(Path(stackfaq).read_text())
    records = [record for _, record in stackfaq_records(data)]
    texts = [r["answer"] for r in records] + [r["question"] for r in records] + [query for query, _ in stackfaq_queries(data)]
    faq = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    if beir_corpus is None:
        return faq[:count]
    abstracts = []
    with open(beir_corpus, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            abstracts.append(f"{row.get('title', '')}. {row.get('text', '')}".strip())
            if len(abstracts) >= count - min(len(faq), count // 2):
                break
    return faq[: count - len(abstracts)] + abstracts
