"""Service settings, read from the environment once when the service starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from features.schemas import DEFAULT_MODEL_NAME, DEFAULT_WAREHOUSE
from serving.cache import DEFAULT_CAPACITY, DEFAULT_THRESHOLD

ENV_WAREHOUSE = "RECQA_WAREHOUSE"
ENV_MODEL = "RECQA_MODEL"
ENV_RELOAD_SECONDS = "RECQA_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 10.0
# Threads per forward pass. The API process (Lance searches, JSON) needs a core too, and two
# OpenMP threads contending with it made one question several times slower
# (benchmarks/RESULTS.md, "Measured figures behind code comments").
DEFAULT_ENCODER_THREADS = 1
# onnx: the model exported to ONNX Runtime at start-up (faster for one question, checked
# against the model there); torch: sentence-transformers as the batch jobs run it.
DEFAULT_ENCODER_BACKEND = "onnx"


@dataclass(frozen=True)
class ServiceSettings:
    """Where the tables are and which encoder the questions go through."""

    warehouse: str = DEFAULT_WAREHOUSE
    model_name: str = DEFAULT_MODEL_NAME
    reload_seconds: float = DEFAULT_RELOAD_SECONDS  # how often the release log is checked
    cache_capacity: int = DEFAULT_CAPACITY
    cache_threshold: float = DEFAULT_THRESHOLD  # cosine similarity for a semantic-cache hit
    encoder_threads: int = DEFAULT_ENCODER_THREADS
    encoder_backend: str = DEFAULT_ENCODER_BACKEND
    encode_locally_when_idle: bool = True  # see serving.encoder_service.IdleFirstEncoder

    @classmethod
    def from_env(cls) -> "ServiceSettings":
        return cls(
            warehouse=os.environ.get(ENV_WAREHOUSE, DEFAULT_WAREHOUSE),
            model_name=os.environ.get(ENV_MODEL, DEFAULT_MODEL_NAME),
            reload_seconds=float(os.environ.get(ENV_RELOAD_SECONDS, DEFAULT_RELOAD_SECONDS)),
            cache_capacity=int(os.environ.get("RECQA_CACHE_CAPACITY", DEFAULT_CAPACITY)),
            cache_threshold=float(os.environ.get("RECQA_CACHE_THRESHOLD", DEFAULT_THRESHOLD)),
            encoder_threads=int(os.environ.get("RECQA_ENCODER_THREADS", DEFAULT_ENCODER_THREADS)),
            encoder_backend=os.environ.get("RECQA_ENCODER_BACKEND", DEFAULT_ENCODER_BACKEND),
            encode_locally_when_idle=os.environ.get("RECQA_LOCAL_ENCODE", "1") not in ("0", "false", "no"),
        )
