"""Choose the semantic cache's similarity threshold on the StackFAQ rephrasings.

Replays the 1,249 rephrasings in a shuffled order against a cache of the ones before
(`evaluation.qa.cache_curve`, which `recqa evaluate qa` also reports) and prints hit rate and
hit precision per threshold.

    python benchmarks/cache_threshold.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from evaluation.qa import cache_curve, load_stackfaq
    from encoding.sentence_transformer import SentenceTransformerEncoder

    qa = load_stackfaq(ROOT / "data/stackfaq/stackExchange-FAQ.json")
    for point in cache_curve(SentenceTransformerEncoder().load(), qa):
        print(f"threshold {point['threshold']:.2f}: hit rate {point['hit_rate']:.3f}, "
              f"hit precision {point['hit_precision']:.3f} ({point['hits']} hits)")


if __name__ == "__main__":
    main()
