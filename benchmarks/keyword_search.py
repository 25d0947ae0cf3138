"""Keyword (BM25) search from memory against Lance's full-text index of the same table.

Prints, for one answers table (a warehouse's, or one made here from a JSONL corpus with the
index build-qa makes): whether memory scores as Lance does (the top 10 of every question:
same rows in the same order, same set, largest score difference; and, where Lance's index
files can be read, how many rows' token counts equal the count Lance stored), what loading
the postings costs, and the time of one question's keyword search both ways, in the same run:
Lance's query (the raw baseline) and `CorpusBM25.top` over the same rows.

    python benchmarks/keyword_search.py --warehouse /tmp/bundled-wh
    python benchmarks/keyword_search.py --corpus ../shared/datasets/scifact/corpus.jsonl \\
        --questions ../shared/datasets/scifact/queries_train.jsonl --work /tmp/kw
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.bm25 import CorpusBM25, tokens  # noqa: E402
from features.schemas import ANSWER_TEXT_COLUMN  # noqa: E402
from serving.keywords import lance_top  # noqa: E402


def corpus_table(corpus: Path, work: Path):
    """A table of the corpus's title and text, indexed as build-qa indexes the answers."""
    import lancedb
    import pyarrow as pa

    from pipelines import lance_io

    rows = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    texts = [f"{row.get('title') or ''}\n{row.get('text') or ''}" for row in rows]
    lancedb.connect(str(work)).create_table("answers", pa.table({ANSWER_TEXT_COLUMN: texts}), mode="overwrite")
    lance_io.create_fts_index(str(work), "answers")
    return lancedb.connect(str(work)).open_table("answers").to_lance()


def stored_token_counts(dataset) -> dict[int, int] | None:
    """Each row's token count as Lance's index stored it, if its files can be read (an internal
    layout: None when this Lance writes it otherwise)."""
    try:
        from lance.file import LanceFileReader

        [path] = glob.glob(f"{dataset.uri}/_indices/*/part_0_docs.lance")
        docs = LanceFileReader(path).read_all().to_table()
        return dict(zip(docs.column("_rowid").to_pylist(), docs.column("_num_tokens").to_pylist()))
    except Exception:  # noqa: BLE001 - a diagnostic only
        return None


def timed(calls, repeat: int) -> tuple[float, float]:
    """p50 wall ms and process CPU ms a call (Lance's own threads included)."""
    walls = []
    cpu = time.process_time()
    for _ in range(repeat):
        for call in calls:
            started = time.perf_counter()
            call()
            walls.append(time.perf_counter() - started)
    return 1000 * statistics.median(walls), 1000 * (time.process_time() - cpu) / (repeat * len(calls))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", help="a warehouse whose answers table (latest version) to compare")
    parser.add_argument("--corpus", type=Path, help="or a BEIR corpus.jsonl to index here")
    parser.add_argument("--questions", type=Path, help="BEIR queries .jsonl (default: the table's own questions)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recqa-keyword-search"), help="where --corpus is indexed")
    parser.add_argument("--count", type=int, default=1_000, help="questions compared and timed")
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds over the questions")
    args = parser.parse_args(argv)
    if bool(args.warehouse) == bool(args.corpus):
        parser.error("give --warehouse or --corpus")
    if args.warehouse:
        import lance

        dataset = lance.dataset(f"{args.warehouse.rstrip('/')}/answers.lance")
    else:
        dataset = corpus_table(args.corpus, args.work)
    if args.questions:
        questions = [json.loads(line)["text"] for line in args.questions.read_text().splitlines() if line.strip()]
    else:
        questions = dataset.to_table(columns=["question"]).column("question").to_pylist()
    questions = list(dict.fromkeys(q for q in questions if q and q.strip()))
    random.Random(0).shuffle(questions)
    questions = questions[: args.count]

    started = time.perf_counter()
    found = dataset.to_table(columns=[ANSWER_TEXT_COLUMN], with_row_id=True)
    row_ids = found.column("_rowid").to_numpy()
    texts = found.column(ANSWER_TEXT_COLUMN).to_pylist()
    bm25 = CorpusBM25(texts)
    load_seconds = time.perf_counter() - started
    print(f"{dataset.uri}: {bm25.rows:,} rows, postings {bm25.nbytes / 2**20:.1f} MB, read and built in {load_seconds:.1f} s; "
          f"{len(questions):,} questions")

    stored = stored_token_counts(dataset)
    if stored is not None:
        equal = sum(stored.get(int(r)) == len(tokens(t or "")) for r, t in zip(row_ids, texts))
        print(f"rows whose token count equals Lance's stored count: {equal:,} of {len(texts):,}")
    same_order = same_set = 0
    largest = 0.0
    for question in questions:
        theirs, their_scores = lance_top(dataset, ANSWER_TEXT_COLUMN, question, 10)
        at, our_scores = bm25.top(question, 10)
        ours = row_ids[at]
        same_order += len(ours) == len(theirs) and bool(np.all(ours == theirs))
        same_set += set(ours.tolist()) == set(theirs.tolist())
        if len(ours) == len(theirs) and len(ours):
            largest = max(largest, float(np.max(np.abs(our_scores - their_scores))))
    print(f"top 10 in the same order: {same_order:,}; the same rows: {same_set:,} of {len(questions):,}; "
          f"largest score difference at the same rank {largest:.5f}")

    for question in questions[:20]:  # warm both
        lance_top(dataset, ANSWER_TEXT_COLUMN, question, 40)
        bm25.top(question, 40)
    lance_ms, lance_cpu = timed([lambda q=q: lance_top(dataset, ANSWER_TEXT_COLUMN, q, 40) for q in questions], args.repeat)
    ours_ms, ours_cpu = timed([lambda q=q: bm25.top(q, 40) for q in questions], args.repeat)
    print(f"one question's 40 best, p50: Lance {lance_ms:.3f} ms ({lance_cpu:.3f} ms CPU), memory {ours_ms:.3f} ms "
          f"({ours_cpu:.3f} ms CPU): {ours_ms / lance_ms:.3f}x the wall, {ours_cpu / lance_cpu:.3f}x the CPU")


if __name__ == "__main__":
    main()
