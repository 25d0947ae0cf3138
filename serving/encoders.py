"""The API process's question encoder: one model, the questions of concurrent requests batched.

Requests run on BentoML's thread pool (serving/service.py). A question that finds a forward
pass free (one per core) is encoded at once, alone; the questions that arrive while every pass
is busy share the next one (`BatchingEncoder`, on serving/batching.py's timer-free batcher).
ONNX Runtime and PyTorch release the GIL while they compute, so a pass does not stop the other
threads' requests. The batching used to be a second BentoML service in its own process: each
question crossed two more HTTP hops and BentoML's dispatcher, and the server held a second
copy of the model. In one process the same load serves 1.5-1.8x the answers a second with
1.2 GB less memory (benchmarks/RESULTS.md, "Serving, seventh run").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from encoding.onnx_encoder import OnnxEncoder
from encoding.sentence_transformer import SentenceTransformerEncoder, native_bf16
from encoding.traced_encoder import TracedEncoder
from features.encoders import Encoder
from features.errors import TableContractError
from serving.batching import Batcher

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 64  # questions one forward pass takes at most: about one pass of short questions on 2 cores
# Forward passes at once at most, whatever the cores: past a few, questions no longer share
# passes (the API has 32 request threads) and batching stops paying.
MAX_LANES = 8
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" or "max <period>"
# From this many texts a call, the traced bfloat16 graph encodes faster than the ONNX fp32 graph
# on one thread (benchmarks/RESULTS.md, "Serving, eighth run"):
# RECQA_ENCODER_PRECISION=bf16 routes there.
BF16_MIN_TEXTS = 2
# A lone question goes wide only after this long with no two passes at once: under concurrent
# requests a wide pass meets a narrow one starting beside it, and the two contend for the cores.
QUIET_SECONDS = 1.0


def load_query_encoder(name: str, backend: str, threads: int, wide_threads: int | None = None) -> Encoder:
    """The model for questions: ONNX Runtime where its export matches the model, else PyTorch.

    `wide_threads`: the ONNX graph also on that many threads, for a question that has the
    cores to itself (`lone_encoder`)."""
    if backend not in ("onnx", "torch"):
        raise ValueError(f"RECQA_ENCODER_BACKEND must be 'onnx' or 'torch', not {backend!r}")
    import torch

    torch.set_num_threads(threads)  # the PyTorch path, and the export's own checks
    model = SentenceTransformerEncoder(name).load()
    if backend == "torch":
        return model
    try:
        return OnnxEncoder(model, threads=threads, wide_threads=wide_threads).load()
    except Exception as error:  # noqa: BLE001 - any export failure leaves the working PyTorch path
        logger.warning("ONNX export of '%s' unusable, encoding questions with PyTorch: %s", name, error)
        return model


def batch_precision(choice: str, otherwise: str, native: bool | None = None) -> str:
    """The precision `choice` (RECQA_INGEST_PRECISION) names: fp32 or bf16 as given; `auto` is
    bf16 where the CPU runs bfloat16 natively (AVX512-BF16 or AMX; `native`, default
    `native_bf16()`), else `otherwise` (the service's RECQA_ENCODER_PRECISION).

    The writes' process takes `auto` by default: embedding is most of a write's CPU and bf16
    takes a fraction of fp32's, and its vectors are fp32's within the batch builds' quality gate
    (cosine 0.9999 at the least on 1,000 texts), the vectors `--quantize bf16` tables hold already.
    """
    if choice not in ("auto", "fp32", "bf16"):
        raise ValueError(f"RECQA_INGEST_PRECISION must be 'auto', 'fp32' or 'bf16', not {choice!r}")
    if choice != "auto":
        return choice
    return "bf16" if (native_bf16() if native is None else native) else otherwise


def load_batch_encoder(name: str, backend: str, threads: int, precision: str = "fp32", wide_threads: int | None = None) -> Encoder:
    """The model for batches of texts (a batch of concurrent questions, a commit's written texts).

    fp32: the questions' model (`load_query_encoder`). bf16: the model with bfloat16 weights,
    traced to one graph (encoding/traced_encoder.py), for calls of BF16_MIN_TEXTS texts or more,
    which on a CPU with AMX or AVX512-BF16 it encodes faster than either fp32 model, and the
    questions' model below that, which is faster for one (benchmarks/RESULTS.md, "Serving,
    eighth run"); its vectors are the fp32 model's within the batch builds'
    quality gate. Traced, not eager: eager PyTorch takes the GIL back between operations, and
    beside the API's busy request threads each take waits.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"RECQA_ENCODER_PRECISION must be 'fp32' or 'bf16', not {precision!r}")
    questions = load_query_encoder(name, backend, threads, wide_threads)
    if precision == "fp32":
        return questions
    if native_bf16() is False:
        logger.warning("RECQA_ENCODER_PRECISION=bf16 on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated, slower than fp32")
    return SizeRoutedEncoder(questions, TracedEncoder(SentenceTransformerEncoder(name, precision="bf16")).load(), BF16_MIN_TEXTS)


class SizeRoutedEncoder:
    """Small calls to one model, calls of `min_texts` or more to another (the same model's
    weights in another precision): each encodes the sizes it is fastest at."""

    def __init__(self, small: Encoder, large: Encoder, min_texts: int) -> None:
        _check_one_model(small, large)
        self.name, self.small, self.large, self.min_texts = small.name, small, large, min_texts

    @property
    def dimension(self) -> int:
        return self.small.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        return (self.large if len(texts) >= self.min_texts else self.small).encode(texts)


def _check_one_model(first: Encoder, second: Encoder) -> None:
    """Two encoders that stand in for each other must be one model (name and dimension)."""
    if (first.name, first.dimension) != (second.name, second.dimension):
        raise TableContractError(f"{first.name!r} ({first.dimension}) and {second.name!r} ({second.dimension}) are not one model")


def lone_encoder(model: Encoder) -> Encoder | None:
    """The model of one question on every lane's threads (`OnnxEncoder.wide`), if it has one:
    the model a `BatchingEncoder` gives a question that finds no other pass running."""
    small = model.small if isinstance(model, SizeRoutedEncoder) else model
    return small.wide if isinstance(small, OnnxEncoder) else None


def encoder_lanes(threads: int, cores: float | None = None, workers: int = 1) -> int:
    """Forward passes the question encoder of one of `workers` service processes runs at once:
    its share of the cores over the threads each pass takes, at least one, at most MAX_LANES.

    One pass at a time on one thread left a core idle while questions queued for the other
    (benchmarks/RESULTS.md, "Serving, seventh run"); ONNX Runtime and PyTorch release the GIL
    while they compute, so two passes on two threads run side by side. `cores` defaults to
    what this process may use (`available_cores`), not the host's count.
    """
    cores = available_cores() if cores is None else cores
    return max(1, min(MAX_LANES, int(cores) // (max(threads, 1) * max(workers, 1))))


def available_cores() -> float:
    """The CPUs this process may use: its affinity, lowered by a cgroup v2 CPU quota (a container's
    limit), which the affinity does not show."""
    cores = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    return min(cores, max(float(quota) / float(period), 1.0)) if quota != "max" else cores


class BatchingEncoder:
    """`encode` from many threads, the texts of concurrent calls encoded in one call of `inner`.

    No timer: a call that finds fewer than `lanes` forward passes running runs at once; calls
    that arrive while all run gather into the next, up to MAX_BATCH_SIZE calls
    (serving/batching.py). So a lone question waits for nothing and batches grow with the load.
    `on_batch(texts)` is told the size of each forward pass (the service's batch-size histogram).

    `alone`, if given, encodes a pass of one text that starts while no other pass runs and none
    has run beside another for QUIET_SECONDS: the same model on every lane's threads. Only the
    questions' passes count: the writes' embedding (ingest, outside this batcher) may still run
    beside a wide pass. At
    concurrency 1 the other cores are otherwise idle. Under concurrent requests passes overlap
    and each keeps to its own threads: a wide pass there soon meets a narrow one starting
    beside it, and the two fight for the cores (benchmarks/RESULTS.md, "Serving, ninth run").
    """

    def __init__(
        self,
        inner: Encoder,
        on_batch: Callable[[int], None] = lambda texts: None,
        max_batch: int = MAX_BATCH_SIZE,
        lanes: int = 1,
        alone: Encoder | None = None,
    ) -> None:
        if alone is not None:
            _check_one_model(inner, alone)
        self.name, self._inner, self._on_batch, self._alone = inner.name, inner, on_batch, alone
        self._crowded_at = -float("inf")  # when a pass last started beside another
        self._batcher: Batcher[list[str], np.ndarray] = Batcher(self._run, max_batch, lanes)

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._batcher.submit(None, list(texts))

    def _run(self, _key: object, calls: list[list[str]]) -> list[np.ndarray]:
        texts = [text for call in calls for text in call]
        self._on_batch(len(texts))
        alone = self._alone is not None and self._quiet() and len(texts) == 1
        vectors = np.asarray((self._alone if alone else self._inner).encode(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise TableContractError(f"encoder '{self.name}' returned shape {vectors.shape}, expected ({len(texts)}, {self.dimension})")
        return np.split(vectors, np.cumsum([len(call) for call in calls[:-1]]))

    def _quiet(self) -> bool:
        """This pass runs alone, and none has run beside another for QUIET_SECONDS (a snapshot:
        a pass starting just after may still overlap this one)."""
        now = time.monotonic()
        if self._batcher.running(None) > 1:
            self._crowded_at = now
            return False
        return now - self._crowded_at >= QUIET_SECONDS
