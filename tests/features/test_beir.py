"""BEIR lines to QA records, and the real SciFact files parse whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features import beir
from features.errors import InputError

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact"


def test_queries_by_id_and_empty_lines_are_skipped():
    assert beir.queries(['{"_id": "7", "text": "Why?"}', "", '{"_id": "8", "text": "How?"}']) == {"7": "Why?", "8": "How?"}


def test_qrels_skip_the_header_and_zero_grades():
    lines = ["query-id\tcorpus-id\tscore", "1\t7\t1", "1\t8\t0", "2\t9\t2"]
    assert beir.qrels(lines) == {"1": {"7": 1.0}, "2": {"9": 2.0}}


@pytest.mark.parametrize(
    "call, lines, message",
    [
        (beir.queries, ['{"_id": "1", "text": "x"}', "{not json"], "row queries.jsonl:2: invalid JSON"),
        (beir.queries, ['{"_id": "1", "text": " "}'], "row queries.jsonl:1, field 'text': missing"),
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
        corpus_ids = {json.loads(line)["_id"] for line in corpus}  # build-qa reads the corpus; only its ids matter here
        texts, judged = beir.queries(queries), beir.qrels(qrels)
    assert len(corpus_ids) == 5183 and len(texts) == 809
    assert sum(len(v) for v in judged.values()) == 919
    assert set(judged) <= set(texts) and {d for v in judged.values() for d in v} <= corpus_ids
