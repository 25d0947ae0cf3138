"""The answers' keyword (BM25) search from memory, used only where it scores as Lance's index does.

A Lance full-text query plans and runs a DataFusion query each time: on this machine it cost
more than the vector search from memory did, and at concurrency 1 the Lance threads it woke
slowed the question's encoding beside it. The same scores from postings in memory cost a
fraction of that (benchmarks/RESULTS.md, "Keyword search from memory").

Used only when it is the same search: the table version's full-text index covers every
fragment, its tokenizer is one features/bm25.py reproduces (read from the index's own
parameters), the postings fit the memory budget beside the vectors, and for a sample of the
table's own questions the scores in memory equal Lance's (the check at load, like the ONNX
encoder's parity check). Rows deleted after the index was built still weigh in Lance's
scores (its document counts) and not in memory's: the check sees that once the scores differ
by more than SCORE_TOLERANCE (one deleted row of the bundled 794 did). Otherwise Lance
answers, as before, and `AnswerIndex.search_info` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from lance.query import MatchQuery

from features.bm25 import Analyzer, CorpusBM25, TooManyPostings
from serving.memory import AnswerMemory

logger = logging.getLogger(__name__)

# Questions of the table compared with Lance at load, and how deep.
PARITY_QUESTIONS = 16
PARITY_DEPTH = 10
# Lance sums the terms' scores in float32; within this they are one score.
SCORE_TOLERANCE = 1e-3
BATCH_ROWS = 8192  # texts read at a time while the postings are built
POSTING_BYTES = 8  # a built posting: its row (int32) and its score share (float32)


def load_keywords(dataset, memory: AnswerMemory, column: str, budget_bytes: int) -> tuple[CorpusBM25 | None, str]:
    """The BM25 postings of `column` over the memory's rows when they may replace Lance's
    full-text search of this version (see the module), else None; and the reason either way."""
    indexed = [index for index in dataset.list_indices() if index.get("type") == "Inverted" and column in index.get("fields", ())]
    if not indexed:
        return None, f"no full-text index on '{column}'"
    fragments = dataset.get_fragments()
    covered = set(indexed[0].get("fragment_ids") or ())
    if any(fragment.fragment_id not in covered for fragment in fragments):
        return None, "the full-text index does not cover every fragment (rows appended since it was built)"
    described = [index for index in dataset.describe_indices() if index.name == indexed[0]["name"]]
    if not described:
        return None, "Lance does not describe the full-text index"
    analyzer = Analyzer.of_index(dict(described[0].details or {}))
    if isinstance(analyzer, str):
        return None, f"the full-text index's tokenizer: {analyzer}"
    room = budget_bytes - memory.nbytes
    try:
        bm25 = CorpusBM25(_texts(dataset, memory, column), analyzer, max_postings=max(room // POSTING_BYTES, 0))
    except (TooManyPostings, ScanMismatch) as error:
        return None, f"the postings were not built: {error}"
    if memory.nbytes + bm25.nbytes > budget_bytes:
        return None, f"the postings ({bm25.nbytes >> 20} MB) do not fit the memory budget beside the vectors"
    questions = _sample_questions(memory)
    if not questions:
        return None, "no question or text of the table to compare with Lance's index"
    for question in questions:
        if not same_as_lance(dataset, column, memory, bm25, question):
            logger.warning("keyword search stays on Lance: in memory it scores %r otherwise than Lance's index", question)
            return None, f"scored {question!r} otherwise than Lance's index (another tokenizer, or rows deleted after it was built)"
    return bm25, f"BM25 in memory ({bm25.nbytes >> 20} MB), scores equal to Lance's index on {len(questions)} of the table's questions"


def _texts(dataset, memory: AnswerMemory, column: str) -> Iterator[str | None]:
    """The column's texts in the memory's row order, a batch at a time rather than the whole
    column as Python strings at once."""
    at = 0
    for batch in dataset.scanner(columns=[column], with_row_id=True, batch_size=BATCH_ROWS, scan_in_order=True).to_batches():
        ids = batch.column("_rowid").to_numpy()
        if not np.array_equal(ids, memory.row_ids[at : at + len(ids)]):  # memory was read in the same order
            raise ScanMismatch(f"answers table version {dataset.version} scanned in another order than its memory was read")
        at += len(ids)
        yield from batch.column(column).to_pylist()
    if at != memory.rows:
        raise ScanMismatch(f"answers table version {dataset.version} scanned {at:,} rows, its memory holds {memory.rows:,}")


class ScanMismatch(RuntimeError):
    """The texts' scan did not return the memory's rows in the memory's order."""


def same_as_lance(dataset, column: str, memory: AnswerMemory, bm25: CorpusBM25, question: str, depth: int = PARITY_DEPTH) -> bool:
    """Whether Lance's `depth` best rows for `question` score alike in memory, and memory's
    `depth` best have the same scores (rows with equal scores may come in another order)."""
    row_ids, theirs = lance_top(dataset, column, question, depth)
    ours = bm25.scores(question)[memory.positions(row_ids)]
    _, best = bm25.top(question, depth)
    return (
        len(best) == len(theirs)
        and np.allclose(ours, theirs, rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
        and np.allclose(best, np.sort(theirs)[::-1], rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
    )


def lance_top(dataset, column: str, question: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Lance's `depth` best rows for `question` by its full-text index: row ids and BM25 scores."""
    found = dataset.to_table(
        columns=["_score"], with_row_id=True, disable_scoring_autoprojection=True, full_text_query=MatchQuery(question, column), limit=depth
    )
    return found.column("_rowid").to_numpy(), found.column("_score").to_numpy().astype(np.float64)


def _sample_questions(memory: AnswerMemory) -> list[str]:
    """Up to PARITY_QUESTIONS distinct questions of the table, evenly spread; the first words of
    its answers where it has fewer questions than that (a corpus of documents without any)."""
    questions = [q for q in dict.fromkeys(memory.fields.column("question").to_pylist()) if q and q.strip()]
    sample = questions[:: max(len(questions) // PARITY_QUESTIONS, 1)][:PARITY_QUESTIONS]
    answers = memory.fields.column("answer").to_pylist()
    for answer in answers[:: max(len(answers) // PARITY_QUESTIONS, 1)]:
        if len(sample) >= PARITY_QUESTIONS:
            break
        if answer and answer.strip():
            sample.append(" ".join(answer.split()[:12]))
    return sample
