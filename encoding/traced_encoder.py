"""A sentence-transformers model traced to one TorchScript graph: bfloat16 batches that keep their
speed beside busy Python threads.

Eager PyTorch runs each of the model's few hundred operations from Python and takes the GIL
back between them. In the API process, where request threads run Python all the time, every
take waits for them, up to the interpreter's switch interval: a bf16 batch beside one busy
Python thread ran at a tenth of its speed alone (benchmarks/RESULTS.md, "Serving, eighth
run"). A traced graph runs all its operations in C++ and releases the GIL
for the whole call, as ONNX Runtime's `run` does; with bfloat16 weights on a CPU with AMX or
AVX512-BF16 it encodes 1.5x (2 texts a call) to 3.7x (32) as many texts a second as the
ONNX fp32 graph on one thread.

`load()` refuses a graph whose vectors differ from the eager model's with the same weights
(a trace records one path through Python branches), so a model the trace gets wrong fails
at start, not in results.
"""

from __future__ import annotations

import warnings

import numpy as np

from encoding.onnx_encoder import PARITY_TEXTS
from encoding.sentence_transformer import SentenceTransformerEncoder, embedding_module, encode_by_length

# Against the eager model with the same weights: only the kernels' summation order differs.
TRACE_PARITY_MIN_COSINE = 0.9995
# Each pass's tokens are padded to a multiple of this (the attention mask keeps the padding out
# of the vectors), so the graph meets few input shapes (`TracedEncoder._encode_batch`).
TOKEN_BUCKET = 16


class TracedEncoder:
    """`Encoder` over a TorchScript trace of `source` (in its precision); batches grouped by length."""

    def __init__(self, source: SentenceTransformerEncoder, batch_size: int = 32) -> None:
        self.name = source.name  # the model's name, whatever its weights' precision: tables record the model
        self.precision = source.precision
        self._source = source
        self._batch_size = batch_size
        self._graph = None
        self._tokenizer = None
        self._names: list[str] = []
        self._max_length = 0

    @property
    def dimension(self) -> int:
        return self._source.dimension

    def load(self) -> "TracedEncoder":
        """Trace and freeze the model's forward pass, then check it against the eager model."""
        if self._graph is not None:
            return self
        import torch

        model = self._source.load()._model
        self._tokenizer, self._max_length = model.tokenizer, int(model.max_seq_length)
        module, self._names, probe = embedding_module(model)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes; parity is checked below
            graph = torch.jit.freeze(torch.jit.trace(module, tuple(probe[name] for name in self._names), check_trace=False))
        self._graph = graph
        cosine = np.sum(self.encode(PARITY_TEXTS) * self._source.encode(PARITY_TEXTS), axis=1)
        if cosine.min() < TRACE_PARITY_MIN_COSINE:
            self._graph = None
            raise RuntimeError(
                f"traced graph of '{self.name}' ({self.precision}) disagrees with the model (cosine {cosine.min():.6f} < "
                f"{TRACE_PARITY_MIN_COSINE})"
            )
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings, (len(texts), dimension) float32; batches grouped by length."""
        self.load()
        # by characters in fixed batches, not `length_groups`: with its passes over bucketed token
        # counts the graph ran slower, beside busy threads far slower (benchmarks/RESULTS.md,
        # "Serving, tenth run")
        return encode_by_length(texts, self.dimension, self._batch_size, self._encode_batch)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """One call in passes of a power-of-two rows each (its count's binary digits, no padded
        rows), tokens padded to a multiple of TOKEN_BUCKET: a handful of shapes in all. The bf16
        kernels keep memory per input shape they meet; with every batch size and length free,
        a process encoding random batches grew from 0.9 to 3.3 GB in 1,000 calls (4.7 GB in
        3,000), and with these shapes to 1.3 GB (benchmarks/RESULTS.md, "Serving, eighth run")."""
        parts, start = [], 0
        while start < len(texts):
            rows = 1 << ((len(texts) - start).bit_length() - 1)
            parts.append(self._forward(texts[start : start + rows]))
            start += rows
        return np.concatenate(parts)

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self._max_length, pad_to_multiple_of=TOKEN_BUCKET, return_tensors="pt"
        )
        with torch.inference_mode():
            return self._graph(*(batch[name] for name in self._names)).numpy()
