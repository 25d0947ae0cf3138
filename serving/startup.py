"""What `RecQA.__init__` starts, one small function or object per job, each tested alone.

BLAS limits, the Prometheus metrics, the question and write encoders, and `ServedState`: the
semantic cache and the store follower (open the release now, then poll) that the endpoints
read, or the reason the service is not ready.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bentoml
from threadpoolctl import threadpool_limits

from features.encoders import Encoder
from features.locations import check_warehouse
from serving.cache import SemanticCache
from serving.encoders import MAX_BATCH_SIZE, BatchingEncoder
from serving.reload import StoreFollower
from serving.settings import ENV_WAREHOUSE, ServiceSettings
from serving.store import Store

logger = logging.getLogger(__name__)

SERVED_VERSION_METRIC = "recqa_served_table_version"
BATCH_BUCKETS = tuple(2**i for i in range(MAX_BATCH_SIZE.bit_length()))  # 1, 2, 4 ... up to the largest pass
# a request queues about the writer's 0.2 s interval when it keeps up: finer there
COMMIT_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COMMIT_RECORDS_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def limit_blas_threads() -> None:
    """One BLAS thread per request thread: concurrency comes from the requests.

    Each request's numpy work (ALS scores) is small; with every API thread also starting BLAS
    threads, /recommend collapsed under concurrency (benchmarks/RESULTS.md).
    """
    threadpool_limits(1, "blas")


@dataclass(frozen=True)
class ServiceMetrics:
    """The service's own counters; the served versions are a gauge made at scrape time (`served_versions_text`)."""

    cache_lookups: Any  # by result: hit | miss
    question_batches: Any  # texts per batch (one call) of the question encoder
    ingest_commit_seconds: Any  # by stage: queued | ahead | append (ingest/writer.py's CommitTimings)
    ingest_commit_records: Any  # records per commit of the write API's writer

    def observe_batch(self, texts: int) -> None:
        self.question_batches.observe(texts)

    def count_lookup(self, hit: bool) -> None:
        self.cache_lookups.labels(result="hit" if hit else "miss").inc()

    def observe_commit(self, timings: Any) -> None:
        """One commit of the write API (ingest/writer.py's `CommitTimings`, its `on_commit`):
        its records, its oldest request's wait, the work done ahead of it (its texts embedded)
        and the change log commit, each in seconds."""
        self.ingest_commit_records.observe(timings.records)
        for stage in ("queued", "ahead", "append"):
            self.ingest_commit_seconds.labels(stage=stage).observe(getattr(timings, stage))


@functools.cache
def service_metrics() -> ServiceMetrics:
    """The service's Prometheus counters, made once per process.

    Not at import: the worker sets PROMETHEUS_MULTIPROC_DIR after importing the service, and
    a counter made before that is never exported. Not per instance either: Prometheus refuses
    a second registration, and a process may start the service more than once (in-process tests).
    """
    return ServiceMetrics(
        cache_lookups=bentoml.metrics.Counter(
            name="recqa_answer_cache_lookups", documentation="Semantic cache lookups of /answer", labelnames=["result"]
        ),
        question_batches=bentoml.metrics.Histogram(
            name="recqa_question_batch_size", documentation="Texts per batch (one call) of the question encoder", buckets=BATCH_BUCKETS
        ),
        ingest_commit_seconds=bentoml.metrics.Histogram(
            name="recqa_ingest_commit_seconds", labelnames=["stage"], buckets=COMMIT_SECONDS_BUCKETS,
            documentation="Seconds of each write API commit by stage: queued (its oldest request's wait), ahead (texts embedded), append",
        ),
        ingest_commit_records=bentoml.metrics.Histogram(
            name="recqa_ingest_commit_records", documentation="Records per write API commit", buckets=COMMIT_RECORDS_BUCKETS
        ),
    )


def served_versions_text(versions: Mapping[str, int]) -> str:
    """The served version of each served table in Prometheus text, read at scrape time: a gauge
    set at each swap would keep a table a later release dropped (Prometheus cannot remove a
    label set in multiprocess mode)."""
    lines = [f"# HELP {SERVED_VERSION_METRIC} Lance table version being served", f"# TYPE {SERVED_VERSION_METRIC} gauge"]
    lines += [f'{SERVED_VERSION_METRIC}{{table="{table}"}} {version}' for table, version in versions.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class QueryEncoders:
    """`questions` encodes the requests' questions, concurrent ones batched; `writes` the change
    log's texts, on the ingest writer's thread (ahead of the commit, kept in the log) or the
    follower's (texts the log holds no vector for), straight through the model."""

    questions: Encoder
    writes: Encoder

    @classmethod
    def of(
        cls, model: Encoder, on_batch: Callable[[int], None] = lambda texts: None, lanes: int = 1, alone: Encoder | None = None
    ) -> "QueryEncoders":
        """One loaded model for both: questions through a `BatchingEncoder` (`lanes` passes at
        once, a lone question on `alone` if given), writes straight through."""
        return cls(BatchingEncoder(model, on_batch, lanes=lanes, alone=alone), model)


def follow_releases(settings: ServiceSettings, encoders: QueryEncoders) -> StoreFollower:
    """A follower of the warehouse's release log that has opened the published tables (so the
    first request does not) and polls in the background."""
    def open_store(versions):
        return Store(settings.warehouse, encoders.questions, versions, encoders.writes, settings.memory_budget_mb)

    follower = StoreFollower(settings.warehouse, open_store, settings.reload_seconds)
    follower.refresh()
    follower.start()
    return follower


class ServedState:
    """What the endpoints read: the current Store and the semantic cache, or why there are none.

    A warehouse or encoder that cannot be opened leaves the process up (liveness) but not ready,
    with the reason; a release not published yet is the follower's reason until it is.
    """

    def __init__(self, follower: StoreFollower | None, cache: SemanticCache | None, reason: str = "") -> None:
        self.follower, self.cache, self._reason = follower, cache, reason

    @classmethod
    def start(cls, settings: ServiceSettings, make_encoders: Callable[[], QueryEncoders]) -> "ServedState":
        try:
            check_warehouse(settings.warehouse, ENV_WAREHOUSE)  # a bad scheme: not ready, saying why
            encoders = make_encoders()
            cache = SemanticCache(encoders.questions.dimension, settings.cache_capacity, settings.cache_threshold)
            return cls(follow_releases(settings, encoders), cache)
        except Exception as error:  # noqa: BLE001 - stay up (liveness) and say why we are not ready
            logger.exception("recqa is not ready")
            return cls(None, None, f"{type(error).__name__}: {error}")

    def current(self) -> Store | None:
        """The Store a request uses from start to end, even if a reload swaps in another."""
        return self.follower.current() if self.follower is not None else None

    @property
    def not_ready_reason(self) -> str:
        return self.follower.not_ready_reason if self.follower is not None else self._reason

    def stop(self) -> None:
        """Stop polling the release log."""
        if self.follower is not None:
            self.follower.stop()
