"""Texts per second of the batch jobs' encode stage, each path against raw `SentenceTransformer.encode` in the same run.

On the same 1,000 real texts (500 StackFAQ answers, 500 SciFact abstracts when --beir-corpus
exists): raw sentence-transformers (the baseline), our PyTorch path, the ONNX fp32 graph the
service uses, the int8 graph when it passes the quality gate (whose figures are printed
either way), and the ONNX paths over a pool of worker processes. Every pipeline path is fed
in batches of `MAX_BATCH_SIZE`, as BatchElements hands them to the DoFn.

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir-corpus", type=Path, default=Path("/work/shared/datasets/scifact/corpus.jsonl"),
                        help="a BEIR corpus.jsonl for half the texts; StackFAQ alone when missing")
    parser.add_argument("--workers", type=int, default=2, help="processes of the pooled runs")
    args = parser.parse_args(argv)

    from encoding.quantization import gate_texts, quality_gate
    from encoding.sentence_transformer import resolve_model_path
    from features.schemas import DEFAULT_MODEL_NAME
    from pipelines.transforms.encode import MAX_BATCH_SIZE, ONNX, TORCH, load_encoder

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
    fp32 = load_encoder(DEFAULT_MODEL_NAME, ONNX)
    rows.append(("ONNX fp32 (--encoder-backend onnx)", _timed(fp32.encode, batches)))

    int8 = load_encoder(DEFAULT_MODEL_NAME, ONNX, "int8")
    gate = quality_gate(fp32, int8, texts)
    if gate.passed:
        rows.append(("ONNX int8 (--quantize int8)", _timed(int8.encode, batches)))
    rows.append((f"ONNX fp32, {args.workers} processes x 1 thread", pool_rate(DEFAULT_MODEL_NAME, ONNX, None, args.workers, batches)))
    if gate.passed:
        rows.append((f"ONNX int8, {args.workers} processes x 1 thread",
                     pool_rate(DEFAULT_MODEL_NAME, ONNX, "int8", args.workers, batches)))

    baseline = rows[0][1]
    print(f"{'path':<46}{'texts/s':>9}{'x raw':>8}")
    for name, rate in rows:
        print(f"{name:<46}{rate:9.1f}{rate / baseline:8.2f}")
    print(gate.describe())
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
