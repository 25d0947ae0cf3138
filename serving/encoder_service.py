"""Query encoding as its own BentoML service, so concurrent questions share one forward pass.

BentoML batches only calls that reach a `batchable` API through its server, so the encoder
lives in a service of its own that `RecQA` depends on (`bentoml.depends`). Under `bentoml
serve` it runs as a separate process and its dispatcher merges the texts of concurrent
requests into one `encode`; in-process (tests, `to_asgi`) the dependency is a plain instance.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import bentoml
import numpy as np

from encoding.onnx_encoder import OnnxEncoder
from encoding.sentence_transformer import SentenceTransformerEncoder, model_dimension, native_bf16
from features.encoders import Encoder
from features.errors import TableContractError
from serving.settings import ServiceSettings

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 64  # about one forward pass of short questions on 2 cores
# From this many texts a call, bfloat16 weights encode faster than the ONNX fp32 graph on one
# thread (benchmarks/RESULTS.md, "Service encoders"): RECQA_ENCODER_PRECISION=bf16 routes there.
BF16_MIN_TEXTS = 4
MAX_LATENCY_MS = 10_000  # the dispatcher sheds load only past this; requests time out at 30 s


# BentoML's client to a dependency closes its session every `max_requests` calls (default 100)
# even with calls in flight, which then fail with "Server disconnected" under concurrency
# (bentoml issue #4971); one long-lived session avoids that, and `encode` retries once.
_ONE_SESSION = {"max_requests": 2**31 - 1, "max_age": 1e9}


@bentoml.service(name="recqa-encoder", workers=1, traffic={"timeout": 30}, runner_connection=_ONE_SESSION)
class QueryEncoder:
    def __init__(self) -> None:
        settings = ServiceSettings.from_env()
        self.encoder = load_batch_encoder(settings.model_name, settings.encoder_backend, settings.encoder_threads, settings.encoder_precision)

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings of a batch of texts, one row per text."""
        return self.encoder.encode(texts)


def load_query_encoder(name: str, backend: str, threads: int) -> Encoder:
    """The model for questions: ONNX Runtime where its export matches the model, else PyTorch."""
    if backend not in ("onnx", "torch"):
        raise ValueError(f"RECQA_ENCODER_BACKEND must be 'onnx' or 'torch', not {backend!r}")
    import torch

    torch.set_num_threads(threads)  # the PyTorch path, and the export's own checks
    model = SentenceTransformerEncoder(name).load()
    if backend == "torch":
        return model
    try:
        return OnnxEncoder(model, threads=threads).load()
    except Exception as error:  # noqa: BLE001 - any export failure leaves the working PyTorch path
        logger.warning("ONNX export of '%s' unusable, encoding questions with PyTorch: %s", name, error)
        return model


def load_batch_encoder(name: str, backend: str, threads: int, precision: str = "fp32", questions: Encoder | None = None) -> Encoder:
    """The model for batches of texts (concurrent questions, a commit's written texts).

    fp32: the questions' model (`load_query_encoder`). bf16: PyTorch with bfloat16 weights for
    calls of BF16_MIN_TEXTS texts or more, which on a CPU with AMX or AVX512-BF16 it encodes
    faster than either fp32 model, and the questions' model below that, which is faster for
    one or two (benchmarks/RESULTS.md, "Service encoders"); its vectors are the fp32 model's
    within the batch builds' quality gate. `questions`: that model, when it is loaded already.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"RECQA_ENCODER_PRECISION must be 'fp32' or 'bf16', not {precision!r}")
    questions = questions if questions is not None else load_query_encoder(name, backend, threads)
    if precision == "fp32":
        return questions
    if native_bf16() is False:
        logger.warning("RECQA_ENCODER_PRECISION=bf16 on a CPU without AVX512-BF16 or AMX: bfloat16 is emulated, slower than fp32")
    return SizeRoutedEncoder(questions, SentenceTransformerEncoder(name, precision="bf16").load(), BF16_MIN_TEXTS)


class SizeRoutedEncoder:
    """Small calls to one model, calls of `min_texts` or more to another (the same model's
    weights in another precision): each encodes the sizes it is fastest at."""

    def __init__(self, small: Encoder, large: Encoder, min_texts: int) -> None:
        if (small.name, small.dimension) != (large.name, large.dimension):
            raise TableContractError(f"{small.name!r} ({small.dimension}) and {large.name!r} ({large.dimension}) are not one model")
        self.name, self.small, self.large, self.min_texts = small.name, small, large, min_texts

    @property
    def dimension(self) -> int:
        return self.small.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        return (self.large if len(texts) >= self.min_texts else self.small).encode(texts)


class RemoteEncoder:
    """The `Encoder` protocol over the QueryEncoder dependency (remote or in-process).

    BentoML connects a dependency only after the service's `__init__`, so the name and
    dimension come from the configuration and the model's files, not from a call; the first
    encode checks that the dimension really is the one the tables were checked against.
    """

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name
        dimension = model_dimension(name)
        if dimension is None:  # a hub id: only loading the model tells
            dimension = SentenceTransformerEncoder(name).dimension
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        try:
            vectors = self._client.encode(texts=list(texts))
        except Exception as error:  # noqa: BLE001 - only a dropped connection is retried
            if not _dropped(error):
                raise
            vectors = self._client.encode(texts=list(texts))  # encoding is safe to repeat
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self._dimension):
            raise TableContractError(f"encoder '{self.name}' returned shape {vectors.shape}, expected ({len(texts)}, {self._dimension})")
        return vectors


class IdleFirstEncoder:
    """Encodes in this process when no other question is being encoded here, else batched.

    Batching pays only when questions arrive together. A lone question sent to the encoder
    service waits on two HTTP hops and the dispatcher to share a batch with nobody, which costs
    more than the forward pass itself (benchmarks/RESULTS.md, "Measured figures behind code
    comments"). Any question that arrives while one is being encoded goes to the batcher,
    so under load nearly all of them do.
    """

    def __init__(self, local: Encoder, batched: Encoder, on_encode: Callable[[str], None] = lambda path: None) -> None:
        if (local.name, local.dimension) != (batched.name, batched.dimension):
            raise TableContractError(
                f"local encoder {local.name!r} ({local.dimension}) differs from the batched one {batched.name!r} ({batched.dimension})"
            )
        self.name = batched.name
        self._local, self._batched, self._on_encode = local, batched, on_encode
        self._lock = threading.Lock()
        self._active = 0

    @property
    def dimension(self) -> int:
        return self._batched.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            alone = self._active == 0
            self._active += 1
        try:
            self._on_encode("local" if alone else "batched")
            return (self._local if alone else self._batched).encode(texts)
        finally:
            with self._lock:
                self._active -= 1


class LazyEncoder:
    """An encoder loaded in this process on its first use, callable from any thread.

    The change log's new texts are embedded on the follower's own thread, where a call to the
    encoder service (an AnyIO client) cannot run; with no local encoder loaded for questions,
    this one is, once, when the first write needs it.
    """

    def __init__(self, load: Callable[[], Encoder], name: str, dimension: int) -> None:
        self.name, self._dimension = name, dimension
        self._load, self._loaded, self._lock = load, None, threading.Lock()

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
        return self._loaded.encode(texts)


def _dropped(error: Exception) -> bool:
    """A pooled connection the server had closed (aiohttp's errors are not ConnectionError)."""
    return isinstance(error, ConnectionError) or "Disconnected" in type(error).__name__
