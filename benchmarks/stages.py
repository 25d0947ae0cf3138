"""Where a request's time goes, stage by stage, in-process over a published warehouse.

Times, one call at a time (p50 over `--calls`): encoding one question with PyTorch and with
the ONNX export the service uses, each /answer search mode at k=10 given the vector, and
`Recommender.for_user`. Run it beside `benchmarks/serving.py` to see what the HTTP path adds.

    python benchmarks/stages.py --warehouse /tmp/benchfull/warehouse
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")


def p50_ms(calls: list[Callable[[], object]]) -> float:
    """Median wall time of the calls, after two untimed warm-up calls."""
    for call in calls[:2]:
        call()
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", required=True, help="a published warehouse")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="threads per forward pass (the service's default is 1)")
    args = parser.parse_args(argv)

    import torch

    from encoding.sentence_transformer import SentenceTransformerEncoder
    from encoding.onnx_encoder import OnnxEncoder
    from registry.log import published_versions
    from serving.store import Store

    torch.set_num_threads(args.threads)
    model = SentenceTransformerEncoder().load()
    onnx = OnnxEncoder(model, threads=args.threads).load()
    store = Store(args.warehouse, onnx, published_versions(args.warehouse))
    rng = random.Random(0)
    answers = store.answers._dataset.to_table(columns=["question"]).column("question").to_pylist()
    questions = rng.sample(sorted(set(answers)), args.calls)
    users = rng.sample(sorted(store.recommender._user_index), args.calls)
    vectors = onnx.encode(questions)

    rows = [
        ("encode 1 question, PyTorch", p50_ms([lambda q=q: model.encode([q]) for q in questions])),
        ("encode 1 question, ONNX Runtime", p50_ms([lambda q=q: onnx.encode([q]) for q in questions])),
    ]
    for mode in ("vector", "keyword", "hybrid"):
        calls = [lambda q=q, v=v: store.answers.answer(q, 10, mode, vector=v) for q, v in zip(questions, vectors)]
        rows.append((f"answer search k=10, {mode}", p50_ms(calls)))
    rows.append(("Recommender.for_user k=10", p50_ms([lambda u=u: store.recommender.for_user(u, 10) for u in users])))
    print(f"{args.warehouse}: {args.calls} calls per stage, {args.threads} thread(s) per forward pass")
    for name, ms in rows:
        print(f"{name:<36}{ms:8.2f} ms p50")


if __name__ == "__main__":
    main()
