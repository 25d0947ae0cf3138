"""The Encoder protocol: what ranking and serving need of a text encoder.

The encoders that run a model (sentence-transformers, its ONNX export) live in encoding/,
the layer that loads model files; tests fill the protocol with a fake (tests/conftest.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...
