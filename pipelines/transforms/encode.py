"""Batched text encoding inside a pipeline, the model loaded once per worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from features.encoders import SentenceTransformerEncoder

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 10.0

# Batches big enough to keep the encoder busy, small enough to bound memory per bundle.
MIN_BATCH_SIZE = 64
MAX_BATCH_SIZE = 256


class EncodeBatchDoFn(beam.DoFn):
    """[(key, text)] -> (key, vector) for each pair of the batch."""

    def __init__(self, model_name: str, stage: str) -> None:
        self._model_name = model_name
        self._stage = stage
        self._encoder: SentenceTransformerEncoder | None = None

    def setup(self) -> None:
        self._encoder = SentenceTransformerEncoder(self._model_name).load()
        self._written = beam.metrics.Metrics.counter(self._stage, "written")
        self._msecs = beam.metrics.Metrics.counter(self._stage, "msecs")
        self._done = 0
        self._started = time.perf_counter()
        self._last_log = self._started

    def process(self, batch: list[tuple[str, str]]) -> Iterator[tuple[str, np.ndarray]]:
        started = time.perf_counter()
        keys = [key for key, _ in batch]
        vectors = self._encoder.encode([text for _, text in batch])
        self._written.inc(len(keys))
        self._msecs.inc(int((time.perf_counter() - started) * 1000))
        self._done += len(keys)
        now = time.perf_counter()
        if now - self._last_log >= PROGRESS_EVERY_SECONDS:  # long local runs show they are moving
            self._last_log = now
            logger.info("%s: %d texts encoded (%.0f/s)", self._stage, self._done, self._done / (now - self._started))
        yield from zip(keys, vectors)


class EncodeTexts(beam.PTransform):
    """(key, text) -> (key, normalised embedding) through BatchElements and one model per worker."""

    def __init__(self, model_name: str, stage: str = "encode") -> None:
        super().__init__()
        self._model_name = model_name
        self._stage = stage

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return (
            pairs
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_BATCH_SIZE, max_batch_size=MAX_BATCH_SIZE)
            | "Encode" >> beam.ParDo(EncodeBatchDoFn(self._model_name, self._stage))
        )
