"""A small BEIR folder cut from the real SciFact train split, for tests that build tables."""

from __future__ import annotations

import json
import random
from pathlib import Path

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact"


def scifact_subset(out: Path, queries: int, distractors: int, seed: int = 0) -> Path:
    """`queries` judged train queries, their judged abstracts and `distractors` other abstracts."""
    rng = random.Random(seed)
    lines = (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()
    header, pairs = lines[0], [line.split("\t") for line in lines[1:] if line.strip()]
    chosen = set(rng.sample(sorted({q for q, _, _ in pairs}), queries))
    kept_pairs = [p for p in pairs if p[0] in chosen]
    judged = {d for _, d, _ in kept_pairs}
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines() if line.strip()]
    others = [doc for doc in corpus if doc["_id"] not in judged]
    docs = [doc for doc in corpus if doc["_id"] in judged] + rng.sample(others, distractors)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    query_lines = [line for line in (SCIFACT / "queries_train.jsonl").read_text().splitlines() if json.loads(line)["_id"] in chosen]
    (out / "queries_train.jsonl").write_text("\n".join(query_lines) + "\n")
    (out / "qrels" / "train.tsv").write_text("\n".join([header, *("\t".join(p) for p in kept_pairs)]) + "\n")
    return out


def test_the_subset_keeps_every_judged_document(tmp_path):
    folder = scifact_subset(tmp_path, queries=10, distractors=20)
    ids = {json.loads(line)["_id"] for line in (folder / "corpus.jsonl").read_text().splitlines()}
    qrels = [line.split("\t") for line in (folder / "qrels" / "train.tsv").read_text().splitlines()[1:]]
    assert len({q for q, _, _ in qrels}) == 10 and {d for _, d, _ in qrels} <= ids and len(ids) >= 30
