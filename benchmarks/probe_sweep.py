"""The served answer search over nprobes on a real indexed answers table: recall@10 against
exact search and p50 latency, to choose how many IVF partitions a query probes.

How to run (a warehouse whose answers table has its IVF-PQ index; questions from a parquet
column, encoded by the table's model):

    python benchmarks/probe_sweep.py --warehouse /tmp/full100k/warehouse \\
        --questions /tmp/full100k/data/documents.parquet --column question --queries 300

Each query goes through `AnswerIndex.answer` in vector mode with only nprobes changed (the
served path: row ids from the index, re-ranked exactly from the vectors held in memory), one
at a time, k=10. The baseline in the same run is the same AnswerIndex searching exactly
(`exact=True`). recall@10 counts the exact top-10 answers the indexed search returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--questions", required=True, help="a parquet file holding the question texts")
    parser.add_argument("--column", default="question")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nprobes", default="10,20,40,80,160")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args(argv)

    import lancedb
    import numpy as np
    import pyarrow.parquet as pq

    from encoding.sentence_transformer import SentenceTransformerEncoder
    from features.schemas import ANSWER_INDEX, ANSWERS_TABLE
    from features.ivf import partitions_for, search_nprobes
    from registry.log import published_versions
    from serving.answers import AnswerIndex

    table = lancedb.connect(args.warehouse).open_table(ANSWERS_TABLE)
    table.checkout(published_versions(args.warehouse)[ANSWERS_TABLE])
    rows = table.count_rows()
    partitions = partitions_for(rows)
    texts = [t for t in pq.read_table(args.questions, columns=[args.column]).column(args.column).to_pylist() if t]
    texts = random.Random(0).sample(texts, min(args.queries, len(texts)))
    encoder = SentenceTransformerEncoder(args.model).load()
    vectors = encoder.encode(texts)
    print(f"{rows:,} rows, {partitions} partitions; served rule: nprobes {search_nprobes(rows)}; {len(texts)} queries")

    def run(index: AnswerIndex) -> tuple[float, list[list[str]]]:
        index.answer(texts[0], 10, "vector", vector=vectors[0])
        times, found = [], []
        for text, vector in zip(texts, vectors):
            started = time.perf_counter()
            hits = index.answer(text, 10, "vector", vector=vector)
            times.append(time.perf_counter() - started)
            found.append([hit.id for hit in hits])
        return 1000 * statistics.median(times), found

    exact_ms, truth = run(AnswerIndex(table, encoder, exact=True))
    print(f"exact (in memory): p50 {exact_ms:.2f} ms")
    print("| nprobes | share of partitions | recall@10 | p50 ms |")
    print("| --- | --- | --- | --- |")
    for nprobes in map(int, args.nprobes.split(",")):
        ms, found = run(AnswerIndex(table, encoder, index=dataclasses.replace(ANSWER_INDEX, nprobes=nprobes)))
        recall = float(np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth)]))
        print(f"| {nprobes} | {nprobes / partitions:.0%} | {recall:.4f} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
