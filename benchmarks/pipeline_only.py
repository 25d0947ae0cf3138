"""Run a `recqa` command with a stand-in encoder that costs nothing: the pipeline's own cost.

The model call dominates a build's time and varies from run to run, hiding what the pipeline
around it costs (reading, chunking, shuffles, writing). This swaps the encoder the encode step
loads (`pipelines.transforms.encode.SentenceTransformerEncoder`, the name tests patch too)
for one that returns a one-hot vector per text, then runs the command as the console script does.

    python benchmarks/pipeline_only.py build-qa --warehouse /tmp/wh --input-format contract \\
        --documents /tmp/gen200k/documents.parquet --ann-min-rows 100000000

The vectors are not spread enough for an IVF-PQ index: keep the table under --ann-min-rows.
Run from another checkout (cd there first) to time that tree's code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd()))  # the checkout being timed: the current folder's code

from pipelines.transforms import encode  # noqa: E402 - after the path set-up


class FreeEncoder:
    """A one-hot vector from the text's length; loads nothing."""

    def __init__(self, name: str = "all-MiniLM-L6-v2") -> None:
        self.name = name

    @property
    def dimension(self) -> int:
        return 384

    def load(self) -> "FreeEncoder":
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[np.arange(len(texts)), [len(text) % self.dimension for text in texts]] = 1.0
        return vectors


if __name__ == "__main__":
    encode.SentenceTransformerEncoder = FreeEncoder
    from cli.main import main

    sys.exit(main(sys.argv[1:]))
