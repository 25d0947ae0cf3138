"""The service's encoders on real questions: one question alone and batches of 32, each against
raw `SentenceTransformer.encode` in fp32 measured in the same run.

How to run (SciFact's train questions from ../shared/datasets, as the service encodes them):

    python benchmarks/question_encoders.py --questions ../shared/datasets/scifact/queries_train.jsonl --threads 1

Compared: the ONNX graph lone questions take (`load_query_encoder`, backend onnx), PyTorch fp32
(backend torch), PyTorch with bfloat16 weights run eagerly, and the same weights traced to one
graph (the model RECQA_ENCODER_PRECISION=bf16 gives calls of BF16_MIN_TEXTS texts or more;
`load_batch_encoder`'s `large`), on `--threads` threads as RECQA_ENCODER_THREADS sets them
(default 1). The raw baseline is sentence-transformers' own `encode` of the same texts, fp32,
batch size 32, on the same threads.

"each call one padded pass" is the ONNX graph as it ran, for calls of up to 64 texts, before
its calls were cut into passes of similar token counts (`length_groups`): every text of a
call padded to the call's longest.

"beside a busy thread" repeats the batches of 32 while one other thread runs pure Python, as
the API's request threads do: an encoder that takes the GIL back between operations waits for
it (up to the interpreter's switch interval) at each one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")


BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", required=True, help="a BEIR queries .jsonl file (the `text` of each line)")
    parser.add_argument("--count", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from benchmarks.serving import raw_single_encode_ms  # one text a call, p50 ms: the same loop for every encoder
    from encoding.onnx_encoder import OnnxEncoder
    from encoding.sentence_transformer import SentenceTransformerEncoder, resolve_model_path
    from serving.encoders import load_batch_encoder, load_query_encoder

    torch.set_num_threads(args.threads)
    texts = [json.loads(line)["text"] for line in Path(args.questions).open()][: args.count]
    raw = SentenceTransformer(resolve_model_path(args.model), device="cpu")

    def batched_rate(encode, size: int = 32) -> float:
        encode(texts[:size])
        started = time.perf_counter()
        for i in range(0, len(texts), size):
            encode(texts[i:i + size])
        return len(texts) / (time.perf_counter() - started)

    def raw_encode(batch):
        return raw.encode(batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    def busy_rate(encode) -> float:
        """batched_rate while another thread runs Python without pause."""
        done = threading.Event()

        def spin() -> None:
            total = 0
            while not done.is_set():
                total += sum(range(1000))

        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            return batched_rate(encode)
        finally:
            done.set()
            spinner.join()

    raw_lone, raw_rate = raw_single_encode_ms(texts[:100], raw), batched_rate(raw_encode)
    reference = raw_encode(texts[:200])
    print(f"{len(texts)} questions, {args.threads} thread(s); raw fp32 encode: one question p50 {raw_lone:.2f} ms, "
          f"batches of 32 {raw_rate:.0f} texts/s")
    rates: dict[str, dict[int, float]] = {}
    print("| encoder | one question p50 | / raw | batches of 32 | / raw | beside a busy thread | / alone | min cosine to raw fp32 (200 questions) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    onnx = load_query_encoder(args.model, "onnx", args.threads)
    if not isinstance(onnx, OnnxEncoder):
        raise SystemExit(f"the ONNX export of {args.model} failed (see the warning above): nothing to compare")
    for name, encoder in (("ONNX fp32 (lone questions)", onnx),
                          ("ONNX fp32, each call one padded pass (no length groups)",
                           SimpleNamespace(encode=lambda batch: onnx._run(onnx._tokenize(batch), list(range(len(batch)))))),
                          ("PyTorch fp32", load_query_encoder(args.model, "torch", args.threads)),
                          ("PyTorch bf16, eager", SentenceTransformerEncoder(args.model, precision="bf16").load()),
                          ("PyTorch bf16, traced (RECQA_ENCODER_PRECISION=bf16 batches)", load_batch_encoder(args.model, "onnx", args.threads, "bf16").large)):
        lone, rate, busy = raw_single_encode_ms(texts[:100], encoder), batched_rate(encoder.encode), busy_rate(encoder.encode)
        cosine = float(np.min(np.sum(encoder.encode(texts[:200]) * reference, axis=1)))
        print(f"| {name} | {lone:.2f} ms | {lone / raw_lone:.2f}x | {rate:.0f} texts/s | {rate / raw_rate:.2f}x "
              f"| {busy:.0f} texts/s | {busy / rate:.2f}x | {cosine:.5f} |", flush=True)
        rates[name] = {size: batched_rate(encoder.encode, size) for size in BATCH_SIZES}
    print()
    print("texts/s by batch size: | encoder | " + " | ".join(map(str, BATCH_SIZES)) + " |")
    for name, by_size in rates.items():
        print(f"| {name} | " + " | ".join(f"{by_size[size]:.0f}" for size in BATCH_SIZES) + " |")


if __name__ == "__main__":
    main()
