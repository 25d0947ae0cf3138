"""Lance's tokenizer reproduced (features/bm25.py) and the corpus BM25's ranking: the order of
its steps, its scores against the formula, ties, masks and repeated words. Its agreement with
Lance's own index on real text: tests/serving/test_keywords.py."""

from __future__ import annotations

import math

import numpy as np

import pytest

from features.bm25 import B, K1, Analyzer, CorpusBM25, TooManyPostings, tokens


def test_tokens_split_stem_then_drop_stop_words_and_fold_accents():
    assert tokens("Running runs; foo_bar") == ["run", "run", "foo", "bar"]  # underscores split, as Lance's simple tokenizer
    assert tokens("Having does the") == ["doe"]  # stop words drop after stemming: having -> have (dropped), does -> doe (kept)
    assert tokens("Café Straße naïve") == ["cafe", "strasse", "naiv"]
    assert tokens("a" * 39 + " " + "b" * 40) == ["a" * 39]  # 40 bytes or more: dropped
    assert tokens("é" * 20) == []  # 40 bytes in UTF-8, though 20 characters
    assert tokens("") == [] and tokens("the of and") == []


def _formula(texts: list[str], query: str) -> np.ndarray:
    docs = [tokens(t) for t in texts]
    average = sum(map(len, docs)) / len(docs)
    out = np.zeros(len(docs))
    for term in tokens(query):  # a repeated word counts each time, as Lance counts it
        df = sum(term in d for d in docs)
        if not df:
            continue
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(term)
            out[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(d) / average)) if tf else 0.0
    return out


TEXTS = ["quokka river night", "river river wombat burrow", "night switch", "", "quokka quokka quokka telemetry river"]


def test_scores_follow_the_bm25_formula_with_repeated_query_words_counted():
    bm25 = CorpusBM25(TEXTS + [None])
    for query in ("quokka", "river night", "river river", "wombat quokka river", "nothing here"):
        np.testing.assert_allclose(bm25.scores(query), np.append(_formula(TEXTS + [""], query)[:-1], 0.0), rtol=1e-6)


def test_top_ranks_best_first_ties_by_row_and_respects_the_mask_and_depth():
    bm25 = CorpusBM25(["cat", "dog", "cat", "cat dog", "cat"])
    rows, scores = bm25.top("cat", 10)
    assert rows.tolist() == [0, 2, 4, 3] and np.all(np.diff(scores) <= 0)  # equal scores in row order
    assert bm25.top("cat", 2)[0].tolist() == [0, 2]  # the tie at the boundary cut by row, every time
    allowed = np.array([False, True, True, True, False])
    assert bm25.top("cat", 10, allowed)[0].tolist() == [2, 3]
    assert bm25.top("cat", 0)[0].tolist() == [] and bm25.top("zebra", 5)[0].tolist() == []
    assert CorpusBM25([]).top("cat", 3)[0].tolist() == []


def test_an_analyzer_follows_the_index_parameters_it_reproduces_and_names_the_ones_it_does_not():
    details = {"base_tokenizer": "simple", "language": "English", "lower_case": True, "stem": False, "remove_stop_words": False,
               "ascii_folding": False, "max_token_length": None, "custom_stop_words": None}
    plain = Analyzer.of_index(details)
    assert plain == Analyzer(stem=False, stop_words=False, ascii_folding=False, max_token_bytes=None)
    assert plain.tokens("Having the Cafés " + "x" * 50) == ["having", "the", "cafés", "x" * 50]
    assert Analyzer.of_index({}) == Analyzer()  # LanceDB's defaults where a parameter is not given
    assert "language is 'French'" in Analyzer.of_index({**details, "language": "French"})
    assert "base_tokenizer is 'ngram'" in Analyzer.of_index({**details, "base_tokenizer": "ngram"})
    assert "custom_stop_words" in Analyzer.of_index({**details, "custom_stop_words": ["foo"]})
    assert CorpusBM25(["Having the cafe"], plain).top("having", 1)[0].tolist() == [0]
    assert CorpusBM25(["Having the cafe"]).top("having", 1)[0].tolist() == []  # the default drops it (have: a stop word)


def test_a_build_stops_once_its_postings_pass_the_bound_it_was_given():
    texts = ["cat dog", "cat bird", "fish"]  # 5 postings
    assert CorpusBM25(texts, max_postings=5).nbytes > 0
    with pytest.raises(TooManyPostings, match="more than 4 postings by row 2"):
        CorpusBM25(texts, max_postings=4)
