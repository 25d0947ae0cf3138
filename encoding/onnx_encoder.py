"""The same sentence-transformers model run by ONNX Runtime, for one question at a time.

For one short question ONNX Runtime is faster than PyTorch's eager kernels (figures:
benchmarks/RESULTS.md, "Measured figures behind code comments"), and for batches of questions
of mixed lengths faster once a call's texts go through in passes of similar token counts
("Serving, tenth run"), so the service's query path uses it, and the batch jobs encode with the same graph
(pipelines/transforms/encode.py): one encoder, one set of vectors on both sides. The graph is
exported from the loaded sentence-transformers model itself (tokenizer outputs in, its own
pooling and normalisation out), so any model exports the same way, and `load()` refuses an
export whose vectors differ from the original's.

`wide_threads` opens the same graph a second time with that many threads, as `wide`: one text
spread across the cores is encoded in less time than on one, when nothing else needs them (the
service's lone questions, serving/encoders.py). Its pool stops spinning as soon as a call
returns (`session.force_spinning_stop`); a pool left spinning took a core from the requests
between calls (benchmarks/RESULTS.md, "Serving, eighth run").

`quantize="int8"` runs the export through encoding/quantization.py (MatMul weights only, per
channel, the feed-forward down-projections' weights left in fp32); such a graph is only as good as its
quality gate says, which the caller runs.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np

from encoding.sentence_transformer import SentenceTransformerEncoder, embedding_module, length_groups

# Texts the export is checked on: short, long (truncated), non-Latin, empty.
PARITY_TEXTS = ["How do I cross out text?", "refund " * 400, "Wie setze ich mein Passwort zurück? 🙂", ""]
PARITY_MIN_COSINE = 0.9999
# A quantized graph is judged by the quality gate on real texts; this only catches a broken one.
QUANTIZED_PARITY_MIN_COSINE = 0.97
QUANTIZE_CHOICES = ("int8",)


class OnnxEncoder:
    """`Encoder` over an ONNX export of a sentence-transformers model; `threads` per forward pass."""

    def __init__(
        self,
        source: SentenceTransformerEncoder,
        threads: int = 1,
        batch_size: int = 64,
        quantize: str | None = None,
        wide_threads: int | None = None,
    ) -> None:
        if quantize is not None and quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize={quantize!r} is not one of {QUANTIZE_CHOICES}: use one of them, or None for fp32")
        self.name = source.name  # the model's name, quantized or not: tables record the model, not its kernels
        self.quantize = quantize
        self._source = source
        self._threads = threads
        self._wide_threads = wide_threads
        self._batch_size = batch_size
        self._session = None
        self._wide_session = None
        self._tokenizer = None
        self._inputs: list[str] = []
        self._max_length = 0
        self._dimension = 0

    @property
    def dimension(self) -> int:
        self.load()
        return self._dimension

    def load(self) -> "OnnxEncoder":
        """Export the model to a temporary folder, open it in ONNX Runtime and check it against PyTorch."""
        if self._session is not None:
            return self
        model = self._source.load()._model
        if model.tokenizer.pad_token_id is None:  # texts of a call are padded to their pass's longest
            raise RuntimeError(f"the tokenizer of '{self.name}' has no padding token: ONNX passes of several texts need one")
        self._tokenizer = model.tokenizer
        self._max_length = int(model.max_seq_length)
        self._dimension = self._source.dimension
        with tempfile.TemporaryDirectory(prefix="recqa-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            self._inputs = _export(model, path)
            if self.quantize == "int8":
                from encoding.quantization import quantize_matmul_int8

                path = quantize_matmul_int8(path, Path(folder) / "model.int8.onnx")
            self._session = _session(path, self._threads, stop_spinning=False)
            if self._wide_threads is not None:
                self._wide_session = _session(path, self._wide_threads, stop_spinning=True)
        expected = self._source.encode(PARITY_TEXTS)
        cosine = np.sum(self.encode(PARITY_TEXTS) * expected, axis=1)
        if self._wide_session is not None:
            cosine = np.minimum(cosine, np.sum(self.wide.encode(PARITY_TEXTS) * expected, axis=1))
        least = PARITY_MIN_COSINE if self.quantize is None else QUANTIZED_PARITY_MIN_COSINE
        if cosine.min() < least:
            self._session = self._wide_session = None
            kind = "" if self.quantize is None else f" ({self.quantize})"
            raise RuntimeError(f"ONNX export{kind} of '{self.name}' disagrees with the model (cosine {cosine.min():.6f} < {least})")
        return self

    @property
    def wide(self) -> "OnnxEncoder | None":
        """This encoder on its `wide_threads` session (None if not asked for): the same graph,
        tokenizer and vectors, more cores a call."""
        self.load()
        if self._wide_session is None:
            return None
        view = copy.copy(self)
        view._session, view._wide_session = self._wide_session, None
        return view

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings, (len(texts), dimension) float32, in the order asked.

        The texts are tokenized once and go through the graph in groups of similar token
        counts (`length_groups`), each padded to its own longest: padding costs what real
        tokens cost, and the texts of one call (a pass of concurrent questions, a commit's
        writes) are often of very different lengths."""
        self.load()
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        if not texts:
            return out
        tokens = self._tokenize(texts)
        for rows in length_groups([len(ids) for ids in tokens["input_ids"]], self._batch_size):
            out[rows] = self._run(tokens, rows)
        return out

    def _tokenize(self, texts: list[str]):
        """Token ids (and the model's other inputs) of each text, truncated as the model does, unpadded."""
        return self._tokenizer(texts, truncation=True, max_length=self._max_length)

    def _run(self, tokens, rows: list[int]) -> np.ndarray:
        """One forward pass over the tokenized texts at `rows`, padded to their longest by the
        tokenizer itself (its pad ids and side)."""
        batch = self._tokenizer.pad({name: [tokens[name][i] for i in rows] for name in self._inputs}, padding=True, return_tensors="np")
        return self._session.run(None, {name: batch[name].astype(np.int64) for name in self._inputs})[0]


def _session(path: Path, threads: int, stop_spinning: bool):
    """An ONNX Runtime session on `threads` intra-op threads; with `stop_spinning`, its pool stops
    spinning when a call returns instead of waiting for the next one on the core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export(model, path: Path) -> list[str]:
    """Write the model's forward pass (tokens -> normalised sentence embedding) as ONNX."""
    import torch

    module, names, probe = embedding_module(model)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes; parity is checked after
        torch.onnx.export(
            module,
            tuple(probe[name] for name in names),
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs only `onnx`, not onnxscript
        )
    return names
