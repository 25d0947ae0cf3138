"""Texts per second of the batch jobs' encode stage, each path against raw `SentenceTransformer.encode` in the same run.

On the same 1,000 real texts (500 StackFAQ answers, 500 SciFact abstracts when --beir-corpus
exists): raw sentence-transformers (the baseline), our PyTorch path in fp32 and in bf16
(`--quantize bf16`), the ONNX fp32 graph the service uses, the int8 graph when it passes the
quality gate, and the ONNX paths over a pool of worker processes. Every pipeline path is fed
in batches of `MAX_BATCH_SIZE`, as BatchElements hands them to the DoFn.

Both halves of the quality gate are printed for each lower precision: the cosine half the
builds run, and nDCG@10 of exact search against fp32's on StackFAQ (rephrasings -> thread) and
SciFact train (`--beir-corpus` folder's queries_train.jsonl and qrels/train.tsv).

    python benchmarks/encode_stage.py --beir-corpus ../shared/datasets/scifact/corpus.jsonl
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_worker_encoder = None


def _timed(encode: Callable[[list[str]], object], batches: list[list[str]]) -> float:
    """Texts per second over all batches, after one untimed warm-up batch."""
    encode(batches[0][:16])
    started = time.perf_counter()
    for batch in batches:
        encode(batch)
    return sum(map(len, batches)) / (time.perf_counter() - started)


def _worker_init(model: str, backend: str, quantize: str | None, threads: int, ready) -> None:
    """Load the encoder once per process, warm it up, then wait for the others (load time is not timed)."""
    global _worker_encoder
    from pipelines.transforms.encode import load_encoder

    _worker_encoder = load_encoder(model, backend, quantize, threads=threads)
    _worker_encoder.encode(["warm up"])
    ready.wait()


def _worker_encode(batch: list[str]) -> int:
    return len(_worker_encoder.encode(batch))


def pool_rate(model: str, backend: str, quantize: str | None, workers: int, batches: list[list[str]]) -> float:
    """Texts per second of `workers` processes, each with its own encoder of 1 thread, over all batches."""
    context = multiprocessing.get_context("spawn")
    ready = context.Manager().Barrier(workers + 1)
    with context.Pool(workers, _worker_init, (model, backend, quantize, 1, ready)) as pool:
        ready.wait()
        started = time.perf_counter()
        done = sum(pool.map(_worker_encode, batches, chunksize=1))
        return done / (time.perf_counter() - started)


def _ndcg(encoder, documents: dict[str, str], queries: dict[str, str], relevant: dict[str, dict[str, float]],
          group=lambda doc_id: doc_id) -> float:
    """Mean nDCG@10 of exact cosine search of `queries` over `documents` (ids ranked by `group`, first hit kept)."""
    import numpy as np

    from features.metrics import mean_at_k

    ids = list(documents)
    matrix = encoder.encode([documents[i] for i in ids])
    asked = [q for q in queries if q in relevant]
    scores = encoder.encode([queries[q] for q in asked]) @ matrix.T
    rankings = {query: list(dict.fromkeys(group(ids[i]) for i in np.argsort(-scores[row])[:50])) for row, query in enumerate(asked)}
    return mean_at_k(rankings, {q: relevant[q] for q in asked}, 10, ["ndcg"])["ndcg"]


def ndcg_sets(corpus: Path | None) -> dict[str, tuple]:
    """(documents, queries, relevance, grouping) of StackFAQ's answer chunks and, when present, SciFact train."""
    import json

    from encoding.quantization import BUNDLED_STACKFAQ
    from features.adapters import stackfaq_documents, stackfaq_queries
    from features.text import answer_chunks

    data = json.loads(BUNDLED_STACKFAQ.read_text())
    chunks = {f"{c['doc_id']}#{c['chunk_id']}": c["text"] for d in stackfaq_documents(data) for c in answer_chunks(d)}
    pairs = stackfaq_queries(data)
    sets = {"StackFAQ": (chunks, {str(i): q for i, (q, _) in enumerate(pairs)}, {str(i): {t: 1.0} for i, (_, t) in enumerate(pairs)},
                         lambda chunk_id: chunk_id[: len("stackfaq-000")])}
    folder = corpus.parent if corpus else None
    if folder and (folder / "queries_train.jsonl").is_file() and (folder / "qrels" / "train.tsv").is_file():
        from features import beir

        documents = {}
        with open(corpus, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                documents[row["_id"]] = f"{row.get('title', '')}. {row.get('text', '')}".strip()
        queries = beir.queries(open(folder / "queries_train.jsonl", encoding="utf-8"))
        relevance = beir.qrels(open(folder / "qrels" / "train.tsv", encoding="utf-8"))
        sets["SciFact train"] = (documents, queries, relevance, lambda doc_id: doc_id)
    return sets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir-corpus", type=Path, default=Path("/work/shared/datasets/scifact/corpus.jsonl"),
                        help="a BEIR corpus.jsonl for half the texts; StackFAQ alone when missing")
    parser.add_argument("--workers", type=int, default=2, help="processes of the pooled runs")
    parser.add_argument("--skip-ndcg", action="store_true", help="only the speed rows and the cosine half of the gate")
    parser.add_argument("--skip-int8", action="store_true", help="leave out the ONNX int8 graph and the ONNX pool")
    args = parser.parse_args(argv)

    from encoding.quantization import gate_texts, quality_gate
    from encoding.sentence_transformer import resolve_model_path
    from features.schemas import DEFAULT_MODEL_NAME
    from pipelines.transforms.encode import BF16, MAX_BATCH_SIZE, ONNX, TORCH, load_encoder

    corpus = args.beir_corpus if args.beir_corpus.is_file() else None
    texts = gate_texts(beir_corpus=corpus)
    batches = [texts[i : i + MAX_BATCH_SIZE] for i in range(0, len(texts), MAX_BATCH_SIZE)]
    print(f"{len(texts)} texts ({'StackFAQ + ' + corpus.parent.name if corpus else 'StackFAQ'}), "
          f"mean {sum(map(len, texts)) / len(texts):.0f} chars, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(resolve_model_path(DEFAULT_MODEL_NAME), device="cpu")
    rows = [("raw SentenceTransformer.encode (baseline)",
             _timed(lambda b: raw.encode(b, batch_size=64, normalize_embeddings=True), [texts]))]
    torch_encoder = load_encoder(DEFAULT_MODEL_NAME, TORCH)
    rows.append(("our PyTorch path (--encoder-backend torch)", _timed(torch_encoder.encode, batches)))
    bf16 = load_encoder(DEFAULT_MODEL_NAME, TORCH, BF16)
    gates = {"bf16 (torch)": (torch_encoder, bf16, quality_gate(torch_encoder, bf16, texts))}
    if gates["bf16 (torch)"][2].passed:
        rows.append(("our PyTorch bf16 (--quantize bf16)", _timed(bf16.encode, batches)))
    if not args.skip_int8:
        fp32 = load_encoder(DEFAULT_MODEL_NAME, ONNX)
        rows.append(("ONNX fp32 (--encoder-backend onnx)", _timed(fp32.encode, batches)))
        int8 = load_encoder(DEFAULT_MODEL_NAME, ONNX, "int8")
        gates["int8 (onnx)"] = (fp32, int8, quality_gate(fp32, int8, texts))
        if gates["int8 (onnx)"][2].passed:
            rows.append(("ONNX int8 (--quantize int8)", _timed(int8.encode, batches)))
        rows.append((f"ONNX fp32, {args.workers} processes x 1 thread", pool_rate(DEFAULT_MODEL_NAME, ONNX, None, args.workers, batches)))
        if gates["int8 (onnx)"][2].passed:
            rows.append((f"ONNX int8, {args.workers} processes x 1 thread",
                         pool_rate(DEFAULT_MODEL_NAME, ONNX, "int8", args.workers, batches)))

    baseline = rows[0][1]
    print(f"{'path':<46}{'texts/s':>9}{'x raw':>8}")
    for name, rate in rows:
        print(f"{name:<46}{rate:9.1f}{rate / baseline:8.2f}")
    for name, (_, _, gate) in gates.items():
        print(f"{name}: {gate.describe()}")
    if not args.skip_ndcg:
        for set_name, (documents, queries, relevance, group) in ndcg_sets(corpus).items():
            for name, (reference, candidate, gate) in gates.items():
                if not gate.passed:
                    print(f"{set_name} nDCG@10, {name}: not measured (the cosine half of the gate failed)")
                    continue
                started = time.perf_counter()
                base = _ndcg(reference, documents, queries, relevance, group)
                low = _ndcg(candidate, documents, queries, relevance, group)
                verdict = "within" if abs(low - base) <= 0.005 else "NOT within"
                print(f"{set_name} nDCG@10, {name}: fp32 {base:.4f}, lower precision {low:.4f}, difference {low - base:+.4f} "
                      f"({verdict} 0.005; {len(documents)} documents, {sum(q in relevance for q in queries)} queries, "
                      f"{time.perf_counter() - started:.0f} s)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
