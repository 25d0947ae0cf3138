"""Batched text encoding inside a pipeline, the model loaded once per worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import apache_beam as beam
import numpy as np

from encoding.sentence_transformer import SentenceTransformerEncoder
from pipelines.progress import Progress

# Batches big enough to keep the encoder busy, small enough to bound memory per bundle.
MIN_BATCH_SIZE = 64
MAX_BATCH_SIZE = 256


class EncodeBatchDoFn(beam.DoFn):
    """[(key, text)] -> (key, vector) for each pair of the batch, with progress against `total`.

    The key is whatever the caller needs back with the vector, usually the whole row: carried
    through the model call, it saves a join (a shuffle of the whole table) after it.

    `total` is the number of texts of the whole PCollection (a side input): exact and known
    before the first batch, at the cost of one count over what is encoded. A runner with many
    workers shows each worker's own count against the whole.
    """

    def __init__(self, model_name: str, stage: str) -> None:
        self._model_name = model_name
        self._stage = stage
        self._encoder: SentenceTransformerEncoder | None = None
        self._progress: Progress | None = None

    def setup(self) -> None:
        self._encoder = SentenceTransformerEncoder(self._model_name).load()
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
    KeyedModelHandler does); the keys need not be distinct.
    """

    def __init__(self, model_name: str, stage: str = "encode") -> None:
        super().__init__()
        self._model_name = model_name
        self._stage = stage

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        total = pairs | "CountTexts" >> beam.combiners.Count.Globally()
        return (
            pairs
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_BATCH_SIZE, max_batch_size=MAX_BATCH_SIZE)
            | "Encode" >> beam.ParDo(EncodeBatchDoFn(self._model_name, self._stage), total=beam.pvalue.AsSingleton(total))
        )
