"""Choose the semantic cache's similarity threshold on the StackFAQ rephrasings.

Replays the 1,249 rephrasings in a shuffled order against a cache of the ones before; a
lookup hits when the most similar earlier rephrasing has cosine >= threshold, and the hit
is right when both belong to the same thread (so the cached answers fit). Prints hit rate
and hit precision per threshold.

    python benchmarks/cache_threshold.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96)


def main() -> None:
    from features.adapters import stackfaq_queries
    from features.encoders import SentenceTransformerEncoder

    queries = stackfaq_queries(json.loads((ROOT / "data/stackfaq/stackExchange-FAQ.json").read_text()))
    random.Random(0).shuffle(queries)
    vectors = SentenceTransformerEncoder().load().encode([q for q, _ in queries])
    threads = np.array([t for _, t in queries])
    similarity = vectors @ vectors.T
    for threshold in THRESHOLDS:
        hits = right = 0
        for i in range(1, len(queries)):
            j = int(np.argmax(similarity[i, :i]))
            if similarity[i, j] >= threshold:
                hits += 1
                right += threads[i] == threads[j]
        print(f"threshold {threshold:.2f}: hit rate {hits / (len(queries) - 1):.3f}, hit precision {right / max(hits, 1):.3f} ({hits} hits)")


if __name__ == "__main__":
    main()
