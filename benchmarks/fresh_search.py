"""What the answers written since the build cost a search: `/answer`'s search path over a
warehouse with its change log applied, against the same tables with none of it, in one run.

How to run (a published warehouse whose change log holds writes since its build, e.g. one a
`benchmarks/freshness.py` run has written to; nothing is written):

    python benchmarks/fresh_search.py --warehouse /tmp/full100k/warehouse --questions /tmp/full100k/data/documents.parquet

The encoder is a stand-in (the fresh chunks get random vectors, the questions the vectors of
table rows plus noise): the figures are the search's own work, not the model's. CPU time is
counted on the calling thread and the threads it waits on (Lance's, BLAS's), per question.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks.overlay_step import FreeEncoder  # noqa: E402 - the stand-in the follower's benchmark uses
from registry.log import changes_version, published_versions  # noqa: E402
from serving.store import Store  # noqa: E402


def per_question(index, questions: list[str], vectors: np.ndarray, mode: str) -> tuple[float, float]:
    """(CPU ms, wall ms) per question of `index.answer` in `mode`, one question at a time."""
    cpu, wall = time.process_time(), time.perf_counter()
    for question, vector in zip(questions, vectors):
        index.answer(question, 10, mode, vector=vector)
    return (time.process_time() - cpu) / len(questions) * 1e3, (time.perf_counter() - wall) / len(questions) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--questions", required=True, help="a parquet file with a question column")
    parser.add_argument("--column", default="question")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="the encoder name the tables were built with")
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args(argv)

    threadpool_limits(1, "blas")  # as the service runs (serving/startup.py)
    encoder = FreeEncoder(args.model, args.dimension)
    table_only = Store(args.warehouse, encoder, published_versions(args.warehouse))
    started = time.perf_counter()
    with_log = table_only.with_changes(changes_version(args.warehouse))
    fresh = with_log.answers._fresh
    print(f"overlay of the change log made in {time.perf_counter() - started:.1f} s: "
          f"{fresh.live if fresh else 0:,} live fresh chunks, {len(fresh.touched) if fresh else 0:,} answers written since the build")
    questions = pq.read_table(args.questions, columns=[args.column]).column(args.column).to_pylist()[: args.queries]
    memory = table_only.answers._memory
    rng = np.random.default_rng(0)
    vectors = memory.vectors[rng.integers(0, memory.rows, len(questions))]
    vectors = vectors + rng.standard_normal(vectors.shape).astype(np.float32) * 0.02
    for index in (table_only.answers, with_log.answers):  # warm both: first queries open index files
        per_question(index, questions[:20], vectors[:20], "hybrid")
    print(f"{'mode':<8}  {'table only CPU':>15}  {'with the log CPU':>17}  {'ratio':>6}  {'wall ratio':>10}")
    for mode in ("keyword", "vector", "hybrid"):
        (base_cpu, base_wall), (log_cpu, log_wall) = (per_question(i, questions, vectors, mode) for i in (table_only.answers, with_log.answers))
        print(f"{mode:<8}  {base_cpu:12.2f} ms  {log_cpu:14.2f} ms  {log_cpu / base_cpu:5.2f}x  {log_wall / base_wall:9.2f}x", flush=True)


if __name__ == "__main__":
    main()
