"""Benchmark the batch jobs at scale against raw baselines measured in the same run.

Generates synthetic contract data (benchmarks/generate.py), runs build-recs and build-qa on
the local runner, then times the raw libraries on the same inputs:
- ALS: the pipeline's ALS stage against a raw `implicit` fit of the same matrix (target <= 1.2x);
- embeddings: the pipeline's encode stage against raw `SentenceTransformer.encode` over the
  same texts (target >= 0.8x the raw throughput).
Prints rows/s per stage and peak memory (max RSS of this process, where the local runner runs).

    python benchmarks/pipelines.py                     # 1,000,000 / 100,000 / 100,000
    python benchmarks/pipelines.py --interactions 100000 --items 10000 --documents 10000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage(result, name: str) -> tuple[int, float]:
    """(rows, seconds) of a stage from a JobResult's stage table."""
    for line in result.stages.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            counts = [int(p.replace(",", "")) for p in parts[1:5] if p != "-"]
            return max(counts) if counts else 0, float(parts[-1])
    raise KeyError(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--work", default=None, help="folder for data and tables (default: a temp dir)")
    parser.add_argument("--baseline-texts", type=int, default=0,
                        help="encode a seeded random sample of this many of the same answer texts for the raw "
                             "baseline (throughput), instead of all of them (default 0 = all)")
    parser.add_argument("--quantize", default=None, choices=("bf16",),
                        help="encode both builds in this precision (past its quality gate); the raw baseline stays fp32")
    args = parser.parse_args(argv)

    import generate  # benchmarks/generate.py, beside this file

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-bench-"))
    data, warehouse = work / "data", str(work / "warehouse")
    started = time.perf_counter()
    generate.main(
        ["--out", str(data), "--format", "parquet", "--interactions", str(args.interactions), "--items", str(args.items),
         "--users", str(args.users), "--documents", str(args.documents), "--seed", "0"]
    )
    print(f"generated in {time.perf_counter() - started:.1f} s\n")

    from pipelines import build_qa, build_recs

    common = ["--warehouse", warehouse, "--input-format", "contract", "--rejects", str(work / "rejects"),
              *(["--quantize", args.quantize] if args.quantize else [])]
    started = time.perf_counter()
    recs = build_recs.run([*common, "--interactions", str(data / "interactions.parquet"), "--items", str(data / "items.parquet")])
    recs_seconds = time.perf_counter() - started
    print(f"build-recs: {recs_seconds:.1f} s wall\n{recs.summary()}\n")
    started = time.perf_counter()
    qa = build_qa.run([*common, "--documents", str(data / "documents.parquet")])
    qa_seconds = time.perf_counter() - started
    print(f"build-qa: {qa_seconds:.1f} s wall\n{qa.summary()}\n")
    pipeline_peak = _peak_rss_mb()

    # Raw baselines on the same inputs, in the same process and run.
    import lance
    import pyarrow.parquet as pq
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from features.adapters import interaction_from_mapping
    from encoding.sentence_transformer import SentenceTransformerEncoder
    from features.interactions import build_matrix
    from features.schemas import ALSConfig

    events = [interaction_from_mapping(r, "bench") for r in pq.read_table(data / "interactions.parquet").to_pylist()]
    matrix = build_matrix(events, item_ids=pq.read_table(data / "items.parquet", columns=["item_id"]).column("item_id").to_pylist())
    config = ALSConfig()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization, alpha=config.alpha,
                                        iterations=config.iterations, random_state=config.random_state)
        started = time.perf_counter()
        model.fit(matrix.matrix, show_progress=False)
        raw_als = time.perf_counter() - started
    _, pipeline_als = _stage(recs, "als")

    texts = lance.dataset(f"{warehouse}/answers.lance").to_table(columns=["text"]).column("text").to_pylist()
    if 0 < args.baseline_texts < len(texts):
        import random

        texts = random.Random(0).sample(texts, args.baseline_texts)
    print(f"raw encode baseline over {len(texts):,} answer texts")
    encoder = SentenceTransformerEncoder().load()
    started = time.perf_counter()
    encoder._model.encode(texts, batch_size=64, normalize_embeddings=True)
    raw_encode = len(texts) / (time.perf_counter() - started)
    encoded, encode_seconds = _stage(qa, "encode-answers")
    stage_encode = encoded / encode_seconds
    job_encode = encoded / qa_seconds

    print("figure                                         value      target")
    print(f"ALS stage / raw implicit fit (time)            {pipeline_als / raw_als:6.2f}x     <= 1.2x   ({pipeline_als:.1f} s vs {raw_als:.1f} s)")
    target = ">= 2.5x" if args.quantize else ">= 0.8x"
    print(f"encode stage / raw encode (throughput)         {stage_encode / raw_encode:6.2f}x     {target}   ({stage_encode:.0f} vs {raw_encode:.0f} texts/s)")
    print(f"whole build-qa job / raw encode (throughput)   {job_encode / raw_encode:6.2f}x               (index builds included)")
    for result in (recs, qa):
        for line in result.stages.splitlines()[1:]:
            parts = line.split()
            if len(parts) != 6 or not parts[-1].replace(".", "", 1).isdigit():  # the lines after the table (rejects)
                continue
            rows, seconds = _stage(result, parts[0])
            if seconds > 0:
                print(f"  {parts[0]:<16} {rows / seconds:>12,.0f} rows/s  ({rows:,} rows, {seconds:.1f} s in-stage)")
    print(f"peak memory (max RSS) during the pipelines: {pipeline_peak:,.0f} MB; with baselines: {_peak_rss_mb():,.0f} MB")
    print(f"wall: build-recs {recs_seconds:.0f} s, build-qa {qa_seconds:.0f} s; data and tables in {work}")


if __name__ == "__main__":
    main()
