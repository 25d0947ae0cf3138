"""The answers' keyword (BM25) search from memory, used only where it scores as Lance's index does.

A Lance full-text query plans and runs a DataFusion query each time: 1.2-1.4 ms for the
794 bundled answers, 2.7 ms of CPU for 100,000, and at concurrency 1 the Lance threads it
wakes slowed the question's encoding beside it. The same scores from postings in memory
cost a fraction of that (benchmarks/RESULTS.md, "Keyword search from memory").

Used only when it is the same search: the table version's full-text index covers every
fragment, the postings fit the memory budget beside the vectors, and for a sample of the
table's own questions the scores in memory equal Lance's (the check at load, like the ONNX
encoder's parity check). Rows deleted after the index was built would show there: Lance's
index still counts them in every term's weight. Otherwise Lance answers, as before, and
`AnswerIndex.search_info` says why.
"""

from __future__ import annotations

import logging

import numpy as np
from lance.query import MatchQuery

from features.bm25 import CorpusBM25
from serving.memory import AnswerMemory

logger = logging.getLogger(__name__)

# Questions of the table compared with Lance at load, and how deep.
PARITY_QUESTIONS = 16
PARITY_DEPTH = 10
# Lance sums the terms' scores in float32; within this they are one score.
SCORE_TOLERANCE = 1e-3


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
    found = dataset.to_table(columns=[column], with_row_id=True)
    texts: list[str | None] = [None] * memory.rows
    for position, text in zip(memory.positions(found.column("_rowid").to_numpy()).tolist(), found.column(column).to_pylist()):
        texts[position] = text
    bm25 = CorpusBM25(texts)
    if memory.nbytes + bm25.nbytes > budget_bytes:
        return None, f"the postings ({bm25.nbytes >> 20} MB) do not fit the memory budget beside the vectors"
    questions = _sample_questions(memory, texts)
    for question in questions:
        if not same_as_lance(dataset, column, memory, bm25, question):
            logger.warning("keyword search stays on Lance: in memory it scores %r otherwise than Lance's index", question)
            return None, f"scored {question!r} otherwise than Lance's index (a tokenizer this build does not reproduce)"
    return bm25, f"BM25 in memory ({bm25.nbytes >> 20} MB), scores equal to Lance's index on {len(questions)} of the table's questions"


def same_as_lance(dataset, column: str, memory: AnswerMemory, bm25: CorpusBM25, question: str, depth: int = PARITY_DEPTH) -> bool:
    """Whether Lance's `depth` best rows for `question` score alike in memory, and memory's
    `depth` best have the same scores (rows with equal scores may come in another order)."""
    found = dataset.to_table(
        columns=["_score"], with_row_id=True, disable_scoring_autoprojection=True, full_text_query=MatchQuery(question, column), limit=depth
    )
    theirs = found.column("_score").to_numpy().astype(np.float64)
    ours = bm25.scores(question)[memory.positions(found.column("_rowid").to_numpy())]
    _, best = bm25.top(question, depth)
    return (
        len(best) == len(theirs)
        and np.allclose(ours, theirs, rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
        and np.allclose(best, np.sort(theirs)[::-1], rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE)
    )


def _sample_questions(memory: AnswerMemory, texts: list[str | None]) -> list[str]:
    """Up to PARITY_QUESTIONS distinct questions of the table, evenly spread; the first words of
    its texts where it has fewer questions than that."""
    questions = [q for q in dict.fromkeys(memory.fields.column("question").to_pylist()) if q and q.strip()]
    step = max(len(questions) // PARITY_QUESTIONS, 1)
    sample = questions[::step][:PARITY_QUESTIONS]
    spread = max(len(texts) // PARITY_QUESTIONS, 1)
    for text in texts[::spread]:
        if len(sample) >= PARITY_QUESTIONS:
            break
        if text and text.strip():
            sample.append(" ".join(text.split()[:12]))
    return sample
