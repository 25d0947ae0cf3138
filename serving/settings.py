"""Every RECQA_* variable the service reads, parsed once at start into typed, frozen models.

Each field's alias is its variable, its default is what an unset variable means, and its
constraints are checked at start: a bad value stops the service with one line naming the
variable, the value and what it expects, never a bare "invalid literal for int()" later.
pydantic by hand rather than pydantic-settings: the project already depends on pydantic, and a
dozen variables need no second library.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.schemas import DEFAULT_MODEL_NAME, DEFAULT_WAREHOUSE
from serving.cache import DEFAULT_CAPACITY, DEFAULT_THRESHOLD
from serving.memory import DEFAULT_MEMORY_BUDGET_MB

logger = logging.getLogger(__name__)

ENV_WAREHOUSE = "RECQA_WAREHOUSE"
ENV_MODEL = "RECQA_MODEL"
ENV_RELOAD_SECONDS = "RECQA_RELOAD_SECONDS"
ENV_CACHE_CAPACITY = "RECQA_CACHE_CAPACITY"
ENV_CACHE_THRESHOLD = "RECQA_CACHE_THRESHOLD"
ENV_ENCODER_THREADS = "RECQA_ENCODER_THREADS"
ENV_ENCODER_BACKEND = "RECQA_ENCODER_BACKEND"
ENV_ENCODER_PRECISION = "RECQA_ENCODER_PRECISION"
ENV_MAX_BODY_BYTES = "RECQA_MAX_BODY_BYTES"
ENV_MEMORY_BUDGET_MB = "RECQA_MEMORY_BUDGET_MB"
ENV_ADMIN_TOKEN = "RECQA_ADMIN_TOKEN"
ENV_API_TOKEN = "RECQA_API_TOKEN"
ENV_INGEST_TOKEN = "RECQA_INGEST_TOKEN"
ENV_INGEST_PRECISION = "RECQA_INGEST_PRECISION"
ENV_INGEST_NICE = "RECQA_INGEST_NICE"
ENV_ACCESS_LOG = "RECQA_ACCESS_LOG"
ENV_WORKERS = "RECQA_WORKERS"

DEFAULT_RELOAD_SECONDS = 10.0
# Threads per forward pass; passes run side by side, one per core (serving/encoders.py). Two
# OpenMP threads a pass contending with the API's other work made one question several times
# slower (benchmarks/RESULTS.md, "Measured figures behind code comments").
DEFAULT_ENCODER_THREADS = 1
# onnx: the model exported to ONNX Runtime at start-up (faster for one question, checked
# against the model there); torch: sentence-transformers as the batch jobs run it.
DEFAULT_ENCODER_BACKEND = "onnx"
# 1 MiB: the largest valid request (1,000 filter values of 256 characters, or a 4,000-character
# question) is well under it; anything bigger is a mistake or an attack, refused before parsing.
DEFAULT_MAX_BODY_BYTES = 1 << 20
# How much lower than the service the writes' process runs (nice(2)) when it embeds in bf16
# and RECQA_INGEST_NICE is unset (0 for fp32 writes): when reads and writes both want the
# cores, the kernel gives the reads most of them (benchmarks/RESULTS.md, "Freshness, sixteenth run").
DEFAULT_INGEST_NICE = 10

_SECRETS = frozenset({ENV_ADMIN_TOKEN, ENV_API_TOKEN, ENV_INGEST_TOKEN})  # never echoed in an error


class SettingsError(ValueError):
    """A RECQA_* variable holds a value the service cannot use; the message is one line naming it."""

    def __init__(self, variable: str, value: str, expected: str, default: object) -> None:
        self.variable = variable
        shown = "(hidden)" if variable in _SECRETS else repr(value)
        super().__init__(f"{variable}={shown} is not valid: {expected} (unset it for the default, {default!r})")


Settings = TypeVar("Settings", bound="EnvSettings")


class EnvSettings(BaseModel):
    """Fields named by their variable (alias) or by their Python name (tests, callers)."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid", allow_inf_nan=False)
    # Variables earlier versions of this class read, and why they went: set, they are named in a
    # warning rather than ignored silently.
    removed_variables: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_env(cls: type[Settings], environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the variables in `environ` (default: the process's) give; SettingsError on a bad one."""
        environ = os.environ if environ is None else environ
        for variable in cls.removed_variables.keys() & environ.keys():
            logger.warning("%s is set but no longer read: %s; unset it", variable, cls.removed_variables[variable])
        given = {field.alias: environ[field.alias] for field in cls.model_fields.values() if field.alias in environ}
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            variable = str(first["loc"][0])
            field = next(f for f in cls.model_fields.values() if f.alias == variable)
            raise SettingsError(variable, given.get(variable, ""), first["msg"][0].lower() + first["msg"][1:], field.default) from None


class ServiceSettings(EnvSettings):
    """Where the tables are, which encoder the questions go through, and the semantic cache."""

    removed_variables: ClassVar[dict[str, str]] = {
        "RECQA_LOCAL_ENCODE": "questions are always encoded in the API process, concurrent ones batched",
    }

    warehouse: str = Field(DEFAULT_WAREHOUSE, alias=ENV_WAREHOUSE, min_length=1, description="the warehouse the release log names tables in")
    model_name: str = Field(DEFAULT_MODEL_NAME, alias=ENV_MODEL, min_length=1, description="sentence-transformers folder or hub name")
    reload_seconds: float = Field(DEFAULT_RELOAD_SECONDS, alias=ENV_RELOAD_SECONDS, gt=0, description="how often the release log is checked")
    cache_capacity: int = Field(DEFAULT_CAPACITY, alias=ENV_CACHE_CAPACITY, ge=1, description="answers the semantic cache holds")
    cache_threshold: float = Field(DEFAULT_THRESHOLD, alias=ENV_CACHE_THRESHOLD, gt=0, le=1, description="cosine for a cache hit")
    encoder_threads: int = Field(DEFAULT_ENCODER_THREADS, alias=ENV_ENCODER_THREADS, ge=1, description="threads per forward pass (passes at once: the cores over this)")
    encoder_backend: Literal["onnx", "torch"] = Field(DEFAULT_ENCODER_BACKEND, alias=ENV_ENCODER_BACKEND)
    encoder_precision: Literal["fp32", "bf16"] = Field(
        "fp32", alias=ENV_ENCODER_PRECISION,
        description="bf16: calls of 2+ texts (a batch of questions, a write commit's texts) run the model's bfloat16 weights as a traced graph; one text keeps the backend's model",
    )
    ingest_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", alias=ENV_INGEST_PRECISION,
        description="the writes' process's batches: auto is bf16 on a CPU with AVX512-BF16 or AMX, else RECQA_ENCODER_PRECISION",
    )
    ingest_nice: int | None = Field(
        None, alias=ENV_INGEST_NICE, ge=0, le=19,
        description="how much lower the writes' process runs than the service (0: the same; unset: 10 for bf16 writes, 0 for fp32)",
    )
    memory_budget_mb: int = Field(
        DEFAULT_MEMORY_BUDGET_MB, alias=ENV_MEMORY_BUDGET_MB, ge=0,
        description="MiB each served answers or items table version may hold in memory for search (0: always search through Lance)",
    )


class WorkerSettings(EnvSettings):
    """How many processes BentoML runs the service in (read when the service module is imported:
    its decorator sets them).

    One by default: each process holds its own copy of the served tables in memory. More let
    the requests' Python run under as many GILs (the event loop's HTTP work, the search around
    Lance and NumPy): on two cores, two processes answered more `/answer` and `/recommend`
    requests a second at concurrency 32 than one (benchmarks/RESULTS.md, "Serving, eighteenth
    run"). The question encoder's passes are shared out so that all processes' passes together
    take the cores once (`encoder_lanes`). The write API keeps one writer process for all the
    workers (ingest/rendezvous.py).
    """

    workers: int = Field(1, alias=ENV_WORKERS, ge=1, le=64, description="processes serving the API, each with its own copy of the tables in memory")


class GuardSettings(EnvSettings):
    """The body limit and the three optional tokens (serving/guard.py applies them)."""

    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, alias=ENV_MAX_BODY_BYTES, ge=1, description="larger bodies get 413")
    admin_token: str = Field("", alias=ENV_ADMIN_TOKEN, description="empty: the admin endpoints do not exist (404)")
    api_token: str = Field("", alias=ENV_API_TOKEN, description="empty: the public endpoints need no token")
    ingest_token: str = Field("", alias=ENV_INGEST_TOKEN, description="empty: the write API does not exist (404)")


class LogSettings(EnvSettings):
    """Whether BentoML writes its line a request (read when the service module is imported:
    BentoML builds its middlewares from the service's configuration).

    Off unless asked, as gunicorn's access log is: the line costs the event loop Python work
    under the GIL on every request, and without it the service answered 1.12x the `/recommend`
    and 1.08x the `/answer` requests a second at concurrency 32 (benchmarks/RESULTS.md,
    "Serving, twelfth run"). A request still counts in `/metrics` by route and status, and
    every response of 400 or more is logged once by the front door (serving/front.py).
    """

    access_log: bool = Field(False, alias=ENV_ACCESS_LOG, description="1: BentoML's access log, a line per request")
