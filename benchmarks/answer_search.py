"""Answer search from memory against today's Lance path, on one answers table, in one run.

In-process, per query: the vector search (`ranked_rows` with a question's vector, 40 chunks
deep as a k=10 request asks), the keyword search, and a whole hybrid answer from a vector
already encoded, each through `AnswerIndex` with the memory budget off (every read through
Lance, as before issue 16) and on (serving/memory.py); and 32 questions' vector searches one
at a time against one batch (serving/batching.py). Then a real `recqa serve` on loopback,
each path in turn: `/answer` hybrid p50 at concurrency 1 (semantic cache off, distinct
questions) against one raw PyTorch `encode` of one question in this process.

By default it builds the bundled StackFAQ answers with build-qa into a temp dir (the real
model) and publishes them; `--warehouse` reuses a published one.

    python benchmarks/answer_search.py
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

STACKFAQ = ROOT / "data" / "stackfaq" / "stackExchange-FAQ.json"
DEPTH = 40  # chunks a k=10 request searches (CHUNK_OVERFETCH 4)
BATCH = 32


def _bench_serving():
    """benchmarks/serving.py (its module name would shadow the `serving` package)."""
    spec = importlib.util.spec_from_file_location("bench_serving", Path(__file__).with_name("serving.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(work: Path) -> str:
    from pipelines import build_qa, publish

    warehouse = str(work / "warehouse")
    qa = build_qa.run(["--warehouse", warehouse, "--documents", str(STACKFAQ), "--rejects", str(work / "rejects")])
    publish.run(["--warehouse", warehouse, "--candidate", qa.candidate, "--force"])
    return warehouse


def per_query_ms(call, items: list, repeat: int) -> float:
    """Median over `repeat` rounds of the mean ms per item of `call(item)` over all items."""
    for item in items[:8]:
        call(item)  # warm-up: caches, index pages
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            call(item)
        rounds.append(1000 * (time.perf_counter() - started) / len(items))
    return statistics.median(rounds)


def scaled_copy(table, work: Path, rows: int):
    """The table's rows copied until it has `rows`, each copy's vectors perturbed (unit noise of
    0.1 per dimension's share, renormalised), with its full-text and IVF-PQ indexes as build-qa
    makes them: the index path at a size the bundled data does not reach, without encoding."""
    import lancedb
    import numpy as np
    import pyarrow as pa

    from features.schemas import ANSWER_INDEX, ANSWERS_TABLE
    from pipelines import lance_io

    base = table.to_lance().to_table()
    column = ANSWER_INDEX.column
    dimension = base.schema.field(column).type.list_size
    matrix = base.column(column).combine_chunks().flatten().to_numpy().reshape(-1, dimension)
    rng = np.random.default_rng(0)
    parts, copy = [], 0
    while sum(p.num_rows for p in parts) < rows:
        noisy = matrix + rng.standard_normal(matrix.shape).astype(np.float32) * (0.1 / np.sqrt(dimension)) * (copy > 0)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        part = base.set_column(base.schema.get_field_index("doc_id"), "doc_id", pa.array([f"{d}~{copy}" for d in base.column("doc_id").to_pylist()]))
        part = part.set_column(part.schema.get_field_index(column), base.schema.field(column),
                               pa.FixedSizeListArray.from_arrays(pa.array(noisy.ravel(), pa.float32()), dimension))
        parts.append(part)
        copy += 1
    scaled = pa.concat_tables(parts).slice(0, rows)
    warehouse = str(work / "scaled")
    lancedb.connect(warehouse).create_table(ANSWERS_TABLE, scaled, mode="overwrite")
    lance_io.create_fts_index(warehouse, ANSWERS_TABLE)
    lance_io.create_vector_indexes(warehouse, ANSWERS_TABLE, [ANSWER_INDEX])
    return lancedb.connect(warehouse).open_table(ANSWERS_TABLE)


def in_process(table, questions: list[str], vectors, repeat: int) -> list[tuple[str, float, float]]:
    import numpy as np

    from serving.answers import AnswerIndex
    from serving.startup import limit_blas_threads

    limit_blas_threads()  # as the service runs: one BLAS thread per request thread

    class Named:  # check_encoder's view of the model: the vectors are already encoded
        name, dimension = table.schema.metadata[b"recqa.encoder"].decode(), vectors.shape[1]

        def encode(self, texts):
            raise AssertionError("every question is given with its vector")

    lance, memory = AnswerIndex(table, Named(), memory_budget_mb=0), AnswerIndex(table, Named())
    print(f"answers table: {lance.rows():,} rows; memory path: {memory.search_info()}")
    pairs = list(zip(questions, vectors))
    counts = collections.Counter(table.to_lance().to_table(columns=["source"]).column("source").to_pylist())
    source = counts.most_common(1)[0][0]  # a filter that keeps rows: the commonest source
    rows = []
    for name, call in (
        ("vector search", lambda index, qv: index.ranked_rows(qv[1], (None, None), DEPTH, False)),
        (f"vector search, filtered (source {source!r}, {counts[source] / lance.rows():.0%} of rows)",
         lambda index, qv: index.ranked_rows(qv[1], ([source], None), DEPTH, False)),
        ("keyword search", lambda index, qv: index.ranked_rows(qv[0], (None, None), DEPTH, False)),
        ("hybrid answer (vector given)", lambda index, qv: index.answer(qv[0], 10, "hybrid", vector=qv[1])),
    ):
        old = per_query_ms(lambda qv: call(lance, qv), pairs, repeat)
        new = per_query_ms(lambda qv: call(memory, qv), pairs, repeat)
        rows.append((name, old, new))
    # 32 questions at once: one matrix product against 32 searches one by one
    batches = [vectors[i : i + BATCH] for i in range(0, len(vectors) - BATCH + 1, BATCH)]
    key = ("exact",) if memory.search_info()["vector_search"] == "exact in memory" else ("index", None, DEPTH)
    alone = per_query_ms(lambda qv: memory._vectors._batch(key, [(qv[1], None, DEPTH)]), pairs, repeat)
    together = per_query_ms(lambda batch: memory._vectors._batch(key, [(v, None, DEPTH) for v in batch]), batches, repeat) / BATCH
    rows.append((f"memory vector search ({key[0]}): alone vs in a batch of {BATCH}", alone, together))
    assert all(np.isfinite([old, new]).all() for _, old, new in rows)
    return rows


def raw_single_encode_ms(questions: list[str], threads: int) -> float:
    """p50 ms of one question through the bare model (PyTorch, `threads` threads), one at a time, in this process."""
    import torch

    torch.set_num_threads(threads)
    return _bench_serving().raw_single_encode_ms(questions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=None, help="a published warehouse with an answers table (default: build the bundled one)")
    parser.add_argument("--work", default=None, help="folder for the tables and the server logs")
    parser.add_argument("--questions", type=int, default=200, help="distinct questions (in-process and over HTTP)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the in-process timings (the median is shown)")
    parser.add_argument("--seconds", type=float, default=15.0, help="load time per server at concurrency 1")
    parser.add_argument("--scaled-rows", type=int, default=50_000,
                        help="also time a copy of the table scaled to this many rows with an IVF-PQ index (0: skip)")
    args = parser.parse_args(argv)

    import random

    import lance
    import pyarrow.compute as pc

    from encoding.sentence_transformer import SentenceTransformerEncoder
    from features.schemas import ANSWERS_TABLE, PUBLISHED_TAG, table_uri

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-answer-search-"))
    work.mkdir(parents=True, exist_ok=True)
    warehouse = args.warehouse or build(work)
    answers = lance.dataset(table_uri(warehouse, ANSWERS_TABLE), version=PUBLISHED_TAG)
    questions = sorted(set(pc.unique(answers.to_table(columns=["question"]).column("question")).to_pylist()) - {None})
    questions = random.Random(0).sample(questions, min(args.questions, len(questions)))
    vectors = SentenceTransformerEncoder().load().encode(questions)

    import lancedb

    table = lancedb.connect(warehouse).open_table(ANSWERS_TABLE)
    table.checkout(PUBLISHED_TAG)
    tables = [("bundled", table)]
    if args.scaled_rows:
        started = time.perf_counter()
        tables.append((f"scaled to {args.scaled_rows:,} rows, IVF-PQ", scaled_copy(table, work, args.scaled_rows)))
        print(f"scaled copy built and indexed in {time.perf_counter() - started:.0f} s")
    for label, searched in tables:
        rows = in_process(searched, questions, vectors, args.repeat)
        print(f"\n{'per query, in-process (' + label + ')':<70}{'Lance ms':>10}{'memory ms':>11}{'Lance / memory':>16}")
        for name, old, new in rows:
            print(f"{name:<70}{old:>10.3f}{new:>11.3f}{old / new:>15.1f}x")

    bench = _bench_serving()
    served = {}
    for path, budget in (("lance", "0"), ("memory", None)):
        if budget is None:
            os.environ.pop("RECQA_MEMORY_BUDGET_MB", None)
        else:
            os.environ["RECQA_MEMORY_BUDGET_MB"] = budget
        server_work = work / f"server-{path}"
        server_work.mkdir(exist_ok=True)
        process, port = bench.start_server(warehouse, server_work, cache=False)
        try:
            bodies = [{"question": q, "k": 10, "mode": "hybrid"} for q in questions]
            bench.drive(port, "/answer", bodies[-16:], 1, 2.0)  # warm-up, not counted
            served[path] = bench.drive(port, "/answer", bodies, 1, args.seconds)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    raws = {threads: raw_single_encode_ms(questions, threads) for threads in (os.cpu_count() or 1, 1)}  # the servers are stopped
    for threads, raw in raws.items():
        print(f"\none raw question encode (PyTorch, {threads} thread{'s' if threads > 1 else ''}, p50): {raw:.2f} ms")
        for path, r in served.items():
            print(f"/answer hybrid c=1, {path:<6} path: p50 {r['p50_ms']:6.2f} ms = {r['p50_ms'] / raw:4.2f}x raw encode   "
                  f"({r['requests']} ok, {r['errors']} errors, p95 {r['p95_ms']:.2f} ms)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine: other jobs running)")


if __name__ == "__main__":
    main()
