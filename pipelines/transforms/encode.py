"""Batched text encoding inside a pipeline, the model loaded once per worker.

The backend is the sentence-transformers model itself (`torch`, the default) or the service's
ONNX Runtime graph (`--encoder-backend onnx`, encoding/onnx_encoder.py): the same vectors
within 1e-4, so the table records the model's name alone either way.

Lower precision is a choice the build makes past the quality gate: `--quantize bf16` (PyTorch
weights in bfloat16, several times faster on CPUs with AMX or AVX512-BF16) or `--quantize int8`
(the ONNX graph's MatMul weights, except those of the feed-forward down-projections).
`--device cuda` runs PyTorch on a GPU where one is present.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from encoding import sentence_transformer
from encoding.onnx_encoder import OnnxEncoder
from encoding.quantization import GateResult, gate_texts, require_gate
from encoding.sentence_transformer import DEVICES, SentenceTransformerEncoder, native_bf16
from pipelines.progress import Progress

TORCH = "torch"
ONNX = "onnx"
BACKENDS = (ONNX, TORCH)
INT8 = "int8"
BF16 = "bf16"
QUANTIZE_CHOICES = (INT8, BF16)
_QUANTIZE_BACKEND = {INT8: ONNX, BF16: TORCH}  # the backend each lower precision runs on
# PyTorch until ONNX Runtime is measured faster for batches on an idle machine: on a shared one
# it was not (benchmarks/RESULTS.md, "Batch encode stage"); both give the same vectors within 1e-4.
DEFAULT_BACKEND = TORCH

# Batches big enough to keep the encoder busy, small enough to bound memory per bundle.
MIN_BATCH_SIZE = 64
MAX_BATCH_SIZE = 256


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """--encoder-backend, --quantize and --device, shared by the builds that encode."""
    parser.add_argument("--encoder-backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                        help="run the model through the service's ONNX Runtime graph or PyTorch; same vectors within 1e-4 (default: %(default)s)")
    parser.add_argument("--quantize", default=None, choices=QUANTIZE_CHOICES,
                        help="bf16 weights (torch; fast on CPUs with AMX or AVX512-BF16) or int8 MatMul weights but the down-projections (onnx), "
                             "used only if the quality gate passes on 1,000 real texts (default: fp32)")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="where PyTorch runs the model; cuda needs a GPU and --encoder-backend torch (default: %(default)s)")


def check_backend(backend: str, quantize: str | None, device: str = "cpu") -> None:
    """Refuse a backend/quantization/device combination that cannot run, naming the flag to change."""
    if backend not in BACKENDS:
        raise ValueError(f"--encoder-backend {backend!r} is not one of {BACKENDS}")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"--quantize {quantize!r} is not one of {QUANTIZE_CHOICES}")
    if quantize is not None and backend != _QUANTIZE_BACKEND[quantize]:
        raise ValueError(f"--quantize {quantize} needs --encoder-backend {_QUANTIZE_BACKEND[quantize]}")
    if device not in DEVICES:
        raise ValueError(f"--device {device!r} is not one of {DEVICES}")
    if device == "cuda" and backend != TORCH:
        raise ValueError(f"--device cuda needs --encoder-backend {TORCH} (the ONNX graph runs on the CPU here)")


def check_device(device: str) -> None:
    """Refuse --device cuda where PyTorch sees no GPU, before a worker loads the model."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: PyTorch sees no CUDA device here (torch.cuda.is_available() is False); "
                             "drop --device to encode on the CPU")


def check_encoding(backend: str, quantize: str | None, device: str = "cpu") -> None:
    """Everything about the encode flags that can be refused without a model: a build calls it
    before it writes anything (its candidate's snapshot tag included)."""
    check_backend(backend, quantize, device)
    check_device(device)


def load_encoder(model_name: str, backend: str = DEFAULT_BACKEND, quantize: str | None = None, threads: int | None = None,
                 device: str = "cpu"):
    """The loaded encoder a worker uses: the model itself (torch, fp32 or bf16) or its ONNX graph.

    `SentenceTransformerEncoder` is looked up in this module, so tests put a stand-in in its
    place; a stand-in has no graph to export and encodes as it is, whatever the backend. Only
    the arguments that differ from the defaults are passed, so a stand-in takes the name alone.
    """
    check_backend(backend, quantize, device)
    options = {}
    if quantize == BF16:
        options["precision"] = BF16
    if device != "cpu":
        options["device"] = device
    source = SentenceTransformerEncoder(model_name, **options).load()
    if backend == TORCH or not isinstance(source, sentence_transformer.SentenceTransformerEncoder):
        return source
    return OnnxEncoder(source, threads=threads or os.cpu_count() or 1, batch_size=MIN_BATCH_SIZE, quantize=quantize).load()


def check_quantization(model_name: str, backend: str, quantize: str | None, texts: list[str] | None = None,
                       device: str = "cpu") -> GateResult | None:
    """Run the quality gate for `quantize` before any worker starts; raises QuantizationRefused with the figures.

    The reference is fp32 on the same backend and device, so the gate measures the precision alone.
    """
    check_encoding(backend, quantize, device)
    if quantize is None:
        return None
    reference = load_encoder(model_name, backend, device=device)
    candidate = load_encoder(model_name, backend, quantize, device=device)
    return require_gate(reference, candidate, gate_texts() if texts is None else texts, quantize)


class EncodeBatchDoFn(beam.DoFn):
    """[(key, text)] -> (key, vector) for each pair of the batch, with progress against `total`.

    The key is whatever the caller needs back with the vector, usually the whole row: carried
    through the model call, it saves a join (a shuffle of the whole table) after it.

    `total` is the number of texts of the whole PCollection (a side input): exact and known
    before the first batch, at the cost of one count over what is encoded. A runner with many
    workers shows each worker's own count against the whole.
    """

    def __init__(self, model_name: str, stage: str, backend: str = DEFAULT_BACKEND, quantize: str | None = None,
                 device: str = "cpu") -> None:
        self._model_name = model_name
        self._stage = stage
        self._backend = backend
        self._quantize = quantize
        self._device = device
        self._encoder = None
        self._progress: Progress | None = None

    def setup(self) -> None:
        self._encoder = load_encoder(self._model_name, self._backend, self._quantize, device=self._device)
        self._written = beam.metrics.Metrics.counter(self._stage, "written")
        self._msecs = beam.metrics.Metrics.counter(self._stage, "msecs")
        self._loads = beam.metrics.Metrics.counter(self._stage, "model_loads")
        self._load_unreported = True
        self._progress = None

    def process(self, batch: list[tuple[str, str]], total: int) -> Iterator[tuple[str, np.ndarray]]:
        if self._load_unreported:  # counted here: runners drop counters incremented in setup()
            self._loads.inc()
            self._load_unreported = False
        if self._progress is None:  # made on the worker, where it is drawn
            self._progress = Progress(total, self._stage, "texts")
        started = time.perf_counter()
        keys = [key for key, _ in batch]
        vectors = self._encoder.encode([text for _, text in batch])
        self._written.inc(len(keys))
        self._msecs.inc(int((time.perf_counter() - started) * 1000))
        self._progress.update(len(keys))
        if self._progress.done >= total:
            self._progress.close()
        yield from zip(keys, vectors)

    def teardown(self) -> None:
        if self._progress is not None:
            self._progress.close(finished=False)


class EncodeTexts(beam.PTransform):
    """(key, text) -> (key, normalised embedding) through BatchElements and one model per worker.

    Any picklable key passes through unchanged beside its text's vector (as RunInference's
    KeyedModelHandler does); the keys need not be distinct. With `quantize`, the quality gate
    runs when the pipeline is built and a failing gate raises QuantizationRefused there.
    """

    def __init__(self, model_name: str, stage: str = "encode", backend: str = DEFAULT_BACKEND, quantize: str | None = None,
                 device: str = "cpu") -> None:
        super().__init__()
        check_backend(backend, quantize, device)
        self._model_name = model_name
        self._stage = stage
        self._backend = backend
        self._quantize = quantize
        self._device = device

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        if self._quantize == BF16 and self._device == "cpu" and native_bf16() is False:  # said before the gate's wait
            print("warning: --quantize bf16 on a CPU without AVX512-BF16 or AMX: PyTorch emulates bf16 and encodes "
                  "slower than fp32 here; drop --quantize", file=sys.stderr, flush=True)
        # Once, in the launching process, before any worker loads the quantized graph.
        self.gate = check_quantization(self._model_name, self._backend, self._quantize, device=self._device)
        if self.gate is not None:
            print(self.gate.describe(), file=sys.stderr, flush=True)
        total = pairs | "CountTexts" >> beam.combiners.Count.Globally()
        return (
            pairs
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_BATCH_SIZE, max_batch_size=MAX_BATCH_SIZE)
            | "Encode" >> beam.ParDo(EncodeBatchDoFn(self._model_name, self._stage, self._backend, self._quantize, self._device),
                                     total=beam.pvalue.AsSingleton(total))
        )
