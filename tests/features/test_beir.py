"""BEIR lines to QA records, and the real SciFact files parse whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from features import beir
from features.errors import InputError

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact"


def test_corpus_titles_stand_as_questions_and_empty_lines_are_skipped():
    docs = beir.corpus_documents(['{"_id": "7", "title": "Title", "text": "Body."}', "", '{"_id": "8", "title": "", "text": "B"}'])
    assert [(d.doc_id, d.question, d.answer) for d in docs] == [("7", "Title", "Body."), ("8", None, "B")]


def test_qrels_skip_the_header_and_zero_grades():
    lines = ["query-id\tcorpus-id\tscore", "1\t7\t1", "1\t8\t0", "2\t9\t2"]
    assert beir.qrels(lines) == {"1": {"7": 1.0}, "2": {"9": 2.0}}


@pytest.mark.parametrize(
    "call, lines, message",
    [
        (beir.corpus_documents, ['{"_id": "1", "text": "x"}', "{not json"], "row corpus.jsonl:2: invalid JSON"),
        (beir.corpus_documents, ['{"_id": "1", "title": "t"}'], "row corpus.jsonl:1, field 'text': missing"),
        (beir.queries, ['["a list"]'], "row queries.jsonl:1: expected a JSON object"),
        (beir.qrels, ["query-id\tcorpus-id\tscore", "1\t7"], "row qrels.tsv:2: expected 3 tab-separated columns"),
        (beir.qrels, ["1\t7\thigh"], "row qrels.tsv:1, field 'score': not a number"),
    ],
)
def test_bad_lines_are_named(call, lines, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        call(lines)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="../shared/datasets/scifact not beside the checkout")
def test_scifact_train_split_parses_whole():
    with (SCIFACT / "corpus.jsonl").open() as corpus, (SCIFACT / "queries_train.jsonl").open() as queries, (SCIFACT / "qrels" / "train.tsv").open() as qrels:
        docs, texts, judged = beir.corpus_documents(corpus), beir.queries(queries), beir.qrels(qrels)
    assert len(docs) == 5183 and len(texts) == 809
    assert sum(len(v) for v in judged.values()) == 919
    assert set(judged) <= set(texts) and {d for v in judged.values() for d in v} <= {d.doc_id for d in docs}
