"""Keyword (BM25) search from memory against Lance's full-text index of the same real table:
the bundled StackFAQ answers as build-qa writes and indexes them. The same scores and rows
for every question, the answers of every mode alike, and Lance kept wherever memory would
not score as its index does (another tokenizer, rows the index does not cover, the budget)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from features.adapters import stackfaq_queries
from features.schemas import ANSWER_TEXT_COLUMN, FTSConfig
from pipelines import lance_io
from serving.answers import AnswerIndex
from serving.keywords import same_as_lance
from tests.conftest import FakeEncoder

TIE = 1e-4  # Lance and numpy add a row's term scores in float32, in different orders


def _answers(warehouse):
    import lancedb

    return lancedb.connect(str(warehouse)).open_table("answers")


@pytest.fixture(scope="module")
def questions(stackfaq_data) -> list[str]:
    return list(dict.fromkeys(question for question, _ in stackfaq_queries(stackfaq_data)))


@pytest.fixture(scope="module")
def indexes(fake_warehouse):
    table = _answers(fake_warehouse)
    return AnswerIndex(table, FakeEncoder()), AnswerIndex(table, FakeEncoder(), memory_budget_mb=0)


def test_every_question_scores_in_memory_as_lances_index_scores_it(indexes, questions):
    memory, lance = indexes
    assert memory.keyword_in_memory and memory.search_info()["keyword_search"] == "in memory"
    assert not lance.keyword_in_memory and lance.search_info()["keyword_search"] == "Lance full-text index"
    assert len(questions) > 1_000
    for question in questions:
        ours = memory.ranked_rows(question, (None, None), 40, False)
        theirs = lance.ranked_rows(question, (None, None), 40, False)
        assert len(ours) == len(theirs), question
        np.testing.assert_allclose([r["_score"] for r in ours], [r["_score"] for r in theirs], rtol=0, atol=TIE, err_msg=question)
        keys = lambda rows: {(r["doc_id"], r["chunk_id"]): r["answer"] for r in rows}  # noqa: E731
        mine, lances = keys(ours), keys(theirs)
        assert all(mine[key] == lances[key] for key in mine.keys() & lances.keys())
        edge = theirs[-1]["_score"] if theirs else 0.0  # a row only one side holds ties with the last
        assert all(abs(r["_score"] - edge) <= TIE for r in ours if (r["doc_id"], r["chunk_id"]) not in lances), question


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
@pytest.mark.parametrize("diversity", [None, 0.5])
def test_answers_come_out_the_same_in_every_mode(indexes, questions, mode, diversity):
    memory, lance = indexes
    differ = 0
    for question in questions[::5]:
        vector = FakeEncoder().encode([question])[0]
        one = memory.answer(question, 10, mode, diversity=diversity, vector=vector)
        other = lance.answer(question, 10, mode, diversity=diversity, vector=vector)
        differ += [h.id for h in one] != [h.id for h in other]
        _same_but_ties(one, other, question)
    assert differ < len(questions[::5]) // 10  # ties are few


def _same_but_ties(one, other, question: str) -> None:
    """The same answers with the same scores, best first; answers of one score may come in
    another order, and at the last score of the list either side may hold different ones."""
    assert len(one) == len(other), question
    np.testing.assert_allclose([h.score for h in one], [h.score for h in other], rtol=0, atol=TIE, err_msg=question)
    assert all(a.fields == b.fields for a in one for b in other if a.id == b.id)
    last = min((h.score for h in one), default=0.0)
    above = lambda hits: {h.id: h.score for h in hits if h.score > last + TIE}  # noqa: E731
    ours, theirs = above(one), above(other)
    assert ours.keys() == theirs.keys(), question
    assert all(abs(ours[i] - theirs[i]) <= TIE for i in ours), question


@pytest.mark.parametrize("stem,stop_words", [(False, False), (False, True), (True, False)])
def test_an_index_built_unstemmed_or_with_stop_words_is_searched_in_memory_alike(fake_warehouse, tmp_path, questions, stem, stop_words):
    """`recqa tune qa` may choose these (its fts_stem and fts_stop_words knobs): the analysis
    follows the index's own parameters."""
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    lance_io.create_fts_index(str(copy), "answers", ANSWER_TEXT_COLUMN, FTSConfig(stem=stem, remove_stop_words=stop_words))
    table = _answers(copy)
    index, lance = AnswerIndex(table, FakeEncoder()), AnswerIndex(table, FakeEncoder(), memory_budget_mb=0)
    assert index.keyword_in_memory, index.search_info()["keyword_reason"]
    for question in questions[::10]:
        ours = [r["_score"] for r in index.ranked_rows(question, (None, None), 40, False)]
        np.testing.assert_allclose(ours, [r["_score"] for r in lance.ranked_rows(question, (None, None), 40, False)], rtol=0, atol=TIE)


def test_an_index_in_another_language_keeps_keyword_search_on_lance(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    lance_io.create_fts_index(str(copy), "answers", ANSWER_TEXT_COLUMN, FTSConfig(language="French"))
    index = AnswerIndex(_answers(copy), FakeEncoder())
    assert index.search_info()["path"] == "memory" and not index.keyword_in_memory
    assert "language is 'French'" in index.search_info()["keyword_reason"]


def test_scores_unlike_lances_at_load_keep_keyword_search_on_lance(fake_warehouse, monkeypatch, questions):
    monkeypatch.setattr("features.bm25.STOP_WORDS", frozenset())  # an analysis that keeps "how", "the": not Lance's
    monkeypatch.setattr("features.bm25._TERMS", {})
    index = AnswerIndex(_answers(fake_warehouse), FakeEncoder())
    assert not index.keyword_in_memory and "otherwise than Lance's index" in index.search_info()["keyword_reason"]
    lance = AnswerIndex(_answers(fake_warehouse), FakeEncoder(), memory_budget_mb=0)
    question = questions[0]
    key = lambda rows: [(r["doc_id"], r["chunk_id"], r["_score"]) for r in rows]  # noqa: E731
    assert key(index.ranked_rows(question, (None, None), 40, False)) == key(lance.ranked_rows(question, (None, None), 40, False))


def test_rows_the_index_does_not_cover_keep_keyword_search_on_lance(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    table = _answers(copy)
    table.add(table.to_lance().to_table(limit=5))  # appended, not indexed: Lance scans them flat
    index = AnswerIndex(_answers(copy), FakeEncoder())
    assert not index.keyword_in_memory and "does not cover every fragment" in index.search_info()["keyword_reason"]


def test_rows_deleted_after_the_index_was_built_keep_keyword_search_on_lance(fake_warehouse, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(fake_warehouse, copy)
    _answers(copy).delete("doc_id = 'stackfaq-000-01'")  # the index still counts it in every term's weight
    index = AnswerIndex(_answers(copy), FakeEncoder())
    assert index.search_info()["path"] == "memory" and not index.keyword_in_memory
    assert "otherwise than Lance's index" in index.search_info()["keyword_reason"]


def test_postings_past_the_budget_keep_keyword_search_on_lance(fake_warehouse, monkeypatch):
    from serving import keywords

    table = _answers(fake_warehouse)
    monkeypatch.setattr(keywords.CorpusBM25, "nbytes", property(lambda self: 2 << 30))
    index = AnswerIndex(table, FakeEncoder())
    assert index.search_info()["path"] == "memory" and not index.keyword_in_memory
    assert "do not fit the memory budget" in index.search_info()["keyword_reason"]


def test_the_parity_check_sees_a_score_that_differs(fake_warehouse, questions):
    from serving import keywords

    memory = AnswerIndex(_answers(fake_warehouse), FakeEncoder())
    dataset, store, bm25 = memory._dataset, memory._memory, memory._bm25
    assert same_as_lance(dataset, ANSWER_TEXT_COLUMN, store, bm25, questions[0])
    bm25._matrix = bm25._matrix * np.float32(1.01)  # one percent off: caught
    assert not same_as_lance(dataset, ANSWER_TEXT_COLUMN, store, bm25, questions[0])
    assert keywords.SCORE_TOLERANCE < 0.01
