"""Batched text encoding inside a pipeline, the model loaded once per worker."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from features.encoders import SentenceTransformerEncoder

# Batches big enough to keep the encoder busy, small enough to bound memory per bundle.
MIN_BATCH_SIZE = 64
MAX_BATCH_SIZE = 256


class EncodeBatchDoFn(beam.DoFn):
    """[(key, text)] -> (key, vector) for each pair of the batch."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name
        self._encoder: SentenceTransformerEncoder | None = None

    def setup(self) -> None:
        self._encoder = SentenceTransformerEncoder(self._model_name).load()

    def process(self, batch: list[tuple[str, str]]) -> Iterator[tuple[str, np.ndarray]]:
        keys = [key for key, _ in batch]
        vectors = self._encoder.encode([text for _, text in batch])
        beam.metrics.Metrics.counter("encode", "texts").inc(len(keys))
        yield from zip(keys, vectors)


class EncodeTexts(beam.PTransform):
    """(key, text) -> (key, normalised embedding) through BatchElements and one model per worker."""

    def __init__(self, model_name: str) -> None:
        super().__init__()
        self._model_name = model_name

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return (
            pairs
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_BATCH_SIZE, max_batch_size=MAX_BATCH_SIZE)
            | "Encode" >> beam.ParDo(EncodeBatchDoFn(self._model_name))
        )
