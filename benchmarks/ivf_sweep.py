"""IVF-PQ at scale: build time, recall@10 against exact search and p50 latency over nprobes and refine.

Clustered unit vectors (no model: `--clusters` centres on the sphere, each row a centre plus
noise) are written as one Lance table by the pipelines' writer, indexed by the builds' own
`create_vector_indexes` (sizes from `ivf_pq_parameters`: ~sqrt(rows) partitions, 8-dim
sub-vectors) and searched through the service's `vector_search`, one query at a time, k=10.
Queries are drawn like the rows but are not rows. Exact top-10 comes from one matrix product
in numpy. The raw baseline, in the same run: exact single-query search through the same call
with the index bypassed (`exact=True`, Lance's flat scan), and a numpy scan of the vectors in
memory.

    python benchmarks/ivf_sweep.py --rows 1000000 --queries 200
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
os.environ.setdefault("LANCE_LOG", "error")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

K = 10


def clustered(rows: int, dimension: int, clusters: int, noise: float, rng: np.random.Generator, chunk: int = 100_000):
    """Unit vectors around `clusters` random unit centres, made `chunk` rows at a time."""
    centres = rng.standard_normal((clusters, dimension)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        points = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dimension)).astype(np.float32) / np.sqrt(dimension)
        yield points / np.linalg.norm(points, axis=1, keepdims=True)


def p50_ms(call, queries: np.ndarray) -> tuple[float, list]:
    """Median wall time of `call(q)` over the queries (after two untimed calls), and the results."""
    call(queries[0]), call(queries[1])
    times, results = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(call(query))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times), results


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def build(warehouse: str, name: str, schema: pa.Schema, vectors: np.ndarray, config, args: argparse.Namespace) -> None:
    """The table by the pipelines' writer, and its IVF-PQ index by the builds' own call (or with --sub-vectors)."""
    from lancedb.index import IvfPq

    from features.ivf import ivf_pq_parameters
    from pipelines.lance_io import commit_table, create_vector_indexes, write_fragments

    started, fragments = time.perf_counter(), []
    for start in range(0, len(vectors), 250_000):
        block = vectors[start:start + 250_000]
        table = pa.table({"row": np.arange(start, start + len(block)),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), args.dimension)}, schema=schema)
        fragments += write_fragments(warehouse, name, table)
    commit_table(warehouse, name, schema, fragments)
    print(f"{len(vectors):,} x {args.dimension} vectors in {args.clusters:,} clusters written in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    parameters = ivf_pq_parameters(len(vectors), args.dimension)
    if args.sub_vectors is None:
        create_vector_indexes(warehouse, name, [config])
    else:
        import lancedb

        parameters["num_sub_vectors"] = args.sub_vectors
        lancedb.connect(warehouse).open_table(name).create_index(
            config.column, config=IvfPq(distance_type=config.distance_type, max_iterations=config.kmeans_iterations, **parameters))
    print(f"IVF-PQ {parameters} built in {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--noise", type=float, default=0.8, help="noise norm relative to a unit centre")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobes", default="10,20,40,80")
    parser.add_argument("--refine", default="0,2,5,10", help="0: no refine (PQ distances only)")
    parser.add_argument("--work", default=None, help="folder for the table (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="the table and index --work holds from an earlier run of the same sizes and seed")
    parser.add_argument("--sub-vectors", type=int, default=None, help="PQ sub-vectors instead of ivf_pq_parameters' (an index built here, not by the builds)")
    args = parser.parse_args(argv)

    import lance
    from threadpoolctl import threadpool_limits

    from features.schemas import ANSWER_INDEX
    from serving.tables import vector_search

    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-ivf-"))
    warehouse, name = str(work / "warehouse"), "vectors"
    rng = np.random.default_rng(args.seed)
    schema = pa.schema([pa.field("row", pa.int64()), pa.field("vector", pa.list_(pa.float32(), args.dimension))])

    started = time.perf_counter()
    vectors = np.concatenate(list(clustered(args.rows, args.dimension, args.clusters, args.noise, rng)))
    config = dataclasses.replace(ANSWER_INDEX, min_rows_for_ann=0).searched(args.rows)  # nprobes as the service derives it
    if not args.reuse:
        build(warehouse, name, schema, vectors, config, args)

    queries = np.concatenate(list(clustered(args.queries, args.dimension, args.clusters, args.noise, np.random.default_rng(args.seed))))
    queries = queries[rng.permutation(len(queries))]
    truth = np.argpartition(-(queries @ vectors.T), K, axis=1)[:, :K]  # the exact top-10 as sets (recall ignores order)
    dataset = lance.dataset(f"{warehouse}/{name}.lance")

    def search(config, exact=False):
        return lambda q: vector_search(dataset, config, q, K, ["row"], exact=exact).to_table().column("row").to_numpy()

    with threadpool_limits(1, "blas"):  # one thread per query, as the service runs them
        exact_lance_ms, found = p50_ms(search(config, exact=True), queries[:20])
        assert recall(found, truth[:20]) > 0.999, "Lance's flat scan should equal the numpy top-10"
        numpy_ms, _ = p50_ms(lambda q: np.argpartition(-(vectors @ q), K)[:K], queries[:50])
    print(f"exact single-query search, p50: Lance flat scan {exact_lance_ms:.1f} ms, numpy in memory {numpy_ms:.1f} ms")
    print()
    print("| nprobes | refine | recall@10 | p50 ms | speed vs Lance exact | speed vs numpy exact |")
    print("| --- | --- | --- | --- | --- | --- |")
    for nprobes in map(int, args.nprobes.split(",")):
        for refine in map(int, args.refine.split(",")):
            swept = dataclasses.replace(config, nprobes=nprobes, refine_factor=refine or None)
            ms, found = p50_ms(search(swept), queries)
            mark = " (served)" if (nprobes, refine) == (config.nprobes, config.refine_factor) else ""
            print(f"| {nprobes} | {refine or 'none'}{mark} | {recall(found, truth):.3f} | {ms:.2f} | {exact_lance_ms / ms:.1f}x | {numpy_ms / ms:.1f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
