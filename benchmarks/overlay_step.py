"""The follower's step: how long applying what was written since the last step takes, as the
change log grows, against rebuilding the overlay from the whole log (what every step cost
before the overlay was incremental, and what a release swap still costs once).

How to run (a published warehouse; the script works on a copy of it):

    python benchmarks/overlay_step.py --warehouse /tmp/wh --steps 240 --per-step 24

Each step appends `--per-step` changes in one commit (a third answer upserts, a third item
upserts, a third events, plus a delete of an answer written earlier), then times
`Store.with_changes` on the newest overlay (incremental) and, every `--every` steps, an
overlay made from the bare tables, which reads, folds and indexes the whole log (from scratch). The encoder is a
stand-in that costs nothing, so the figures are the overlay's own work, not the model's
(benchmarks/freshness.py measures everything together through a real server).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

from features.changes import parse_deletes, parse_records  # noqa: E402
from pipelines import lance_io  # noqa: E402
from registry.log import changes_version, published_versions  # noqa: E402
from serving.store import Store  # noqa: E402


class FreeEncoder:
    """The bundled model's name and size, vectors at no cost: the overlay's work alone is timed."""

    def __init__(self, name: str, dimension: int) -> None:
        self.name, self.dimension = name, dimension
        self._rng = np.random.default_rng(0)  # one stream: no two texts share a vector

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._rng.standard_normal((len(texts), self.dimension)).astype(np.float32)


def step_changes(rng: random.Random, step: int, per_step: int, users: list[str], items: list[str]) -> list:
    third = max(1, per_step // 3)
    words = "alpha beta gamma delta quokka wombat river night".split()
    answers, _ = parse_records("answers", [{"doc_id": f"bench-{step}-{i}", "answer": " ".join(rng.choice(words) for _ in range(40))}
                                           for i in range(third)])
    new_items, _ = parse_records("items", [{"item_id": f"bench-item-{step}-{i}", "title": "bench item"} for i in range(third)])
    events, _ = parse_records("events", [{"user_id": rng.choice(users), "item_id": rng.choice(items), "timestamp": 1.0} for _ in range(third)])
    deletes, _ = parse_deletes("answers", [f"bench-{step - 3}-0"]) if step >= 3 else ([], [])
    return answers + new_items + events + deletes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="a published warehouse with the recommendation and answers tables")
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--per-step", type=int, default=24)
    parser.add_argument("--every", type=int, default=40, help="time a from-scratch overlay every this many steps")
    parser.add_argument("--compact-every", type=int, default=100, help="compact the log every this many commits, as the writer does")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="the encoder name the tables were built with")
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="overlay-step-"))
    warehouse = str(work / "warehouse")
    shutil.copytree(args.warehouse, warehouse)
    versions = published_versions(warehouse)
    encoder = FreeEncoder(args.model, args.dimension)
    base = Store(warehouse, encoder, versions)  # the tables alone: an overlay made from it reads the whole log
    store = base.with_changes(changes_version(warehouse))
    rows = store.recommender.rows()
    users, items = rows["user_ids"][:50], rows["item_ids"]
    rng = random.Random(0)
    incremental: list[float] = []
    print(f"{'steps':>11}  {'changes':>8}  {'incremental p50':>16}  {'from scratch':>13}  {'ratio':>7}")
    for step in range(args.steps):
        lance_io.append_changes(warehouse, step_changes(rng, step, args.per_step, users, items))
        if step % args.compact_every == args.compact_every - 1:
            lance_io.compact_changes(warehouse, keep_seconds=0)
        version = changes_version(warehouse)
        started = time.perf_counter()
        store = store.with_changes(version)
        incremental.append(time.perf_counter() - started)
        if (step + 1) % args.every == 0:
            started = time.perf_counter()
            base.with_changes(version)
            scratch = time.perf_counter() - started
            window = statistics.median(incremental[-args.every:])
            print(f"{step + 2 - args.every:>4}-{step + 1:<6}  {(step + 1) * args.per_step:>8}  {window * 1000:>13.1f} ms  "
                  f"{scratch * 1000:>10.1f} ms  {scratch / window:>6.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
