"""Service settings, read from the environment once when the service starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from features.schemas import DEFAULT_MODEL_NAME, DEFAULT_WAREHOUSE

ENV_WAREHOUSE = "RECQA_WAREHOUSE"
ENV_MODEL = "RECQA_MODEL"


@dataclass(frozen=True)
class ServiceSettings:
    """Where the tables are and which encoder the questions go through."""

    warehouse: str = DEFAULT_WAREHOUSE
    model_name: str = DEFAULT_MODEL_NAME

    @classmethod
    def from_env(cls) -> "ServiceSettings":
        return cls(
            warehouse=os.environ.get(ENV_WAREHOUSE, DEFAULT_WAREHOUSE),
            model_name=os.environ.get(ENV_MODEL, DEFAULT_MODEL_NAME),
        )
