"""The fresh answers' overlay built step by step from the change log: the same searches as one
built from scratch, each write embedded once, and an older overlay unchanged by later steps."""

from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pytest

from features.bm25 import B, K1, Analyzer, PostingsBM25, tokens
from features.changes import Change, fold
from serving import overlay
from serving.overlay import advance_answers

WORDS = "quokka wombat telemetry switch burrow night github strike text cross answer river".split()
DIMENSION = 16


class Encoder:
    """Words hashed into a few dimensions (no model), counting every text it is given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        out = np.zeros((len(texts), DIMENSION), np.float32)
        for row, text in enumerate(texts):
            for word in tokens(text):
                out[row, zlib.crc32(word.encode()) % DIMENSION] += 1.0
        return out + 1e-3


def _steps(seed: int, steps: int, per_step: int) -> list[list[Change]]:
    rng = random.Random(seed)
    out = []
    for step in range(steps):
        changes = []
        for n in range(per_step):
            doc_id = f"d{rng.randrange(12)}"
            if rng.random() < 0.25:
                changes.append(Change("answers", "delete", doc_id))
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 9)))
                changes.append(Change("answers", "upsert", doc_id, {"doc_id": doc_id, "answer": f"{text} {step}-{n}", "question": None,
                                                                   "source": rng.choice(["a", "b"]), "tags": [rng.choice(["x", "y"])]}))
        out.append(changes)
    return out


def _searches(fresh, vector):
    found = {}
    for query in ("quokka telemetry", "github strike text", "river night wombat"):
        for sources, tags in ((None, None), (["a"], None), (None, ["y"])):
            keyword = fresh.keyword_rows(query, sources, tags, 8)
            found[(query, "kw", str(sources), str(tags))] = [(r["doc_id"], r["chunk_id"], float(r["_score"])) for r in keyword]
            near = fresh.vector_rows(vector, sources, tags, 8)
            found[(query, "vec", str(sources), str(tags))] = [(r["doc_id"], r["chunk_id"], float(r["_distance"])) for r in near]
    return found


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("slack", [0, 1000])  # 0: the store is compacted at almost every step
def test_an_overlay_built_step_by_step_searches_like_one_built_at_once(seed, slack, monkeypatch):
    monkeypatch.setattr(overlay, "COMPACT_SLACK", slack)
    encode = Encoder()
    vector = encode(["quokka telemetry river"])[0]
    fresh, folded, everything = None, None, []
    for step in _steps(seed, 8, 5):
        folded = fold(step, folded)
        fresh = advance_answers(fresh, folded, (c.key for c in step), encode, corpus_size=100)
        everything += step
    at_once = advance_answers(None, fold(everything), (c.key for c in everything), Encoder(), corpus_size=100)
    assert fresh.live == at_once.live and dict(fresh.documents) == dict(at_once.documents) and fresh.touched == at_once.touched
    stepwise, whole = _searches(fresh, vector), _searches(at_once, vector)
    assert stepwise.keys() == whole.keys()
    for key in whole:  # the same rows in the same order; scores equal but for float rounding (one ulp)
        assert [row[:2] for row in stepwise[key]] == [row[:2] for row in whole[key]], key
        assert np.allclose([row[2] for row in stepwise[key]], [row[2] for row in whole[key]], rtol=0, atol=1e-5), key


def test_each_step_embeds_only_the_answers_it_wrote_and_older_overlays_stay_as_they_were():
    encode = Encoder()
    first = [Change("answers", "upsert", "d1", {"doc_id": "d1", "answer": "quokka telemetry switch", "tags": []})]
    second = [Change("answers", "upsert", "d2", {"doc_id": "d2", "answer": "wombat burrow night", "tags": []}),
              Change("answers", "delete", "d1")]
    one = advance_answers(None, fold(first), ["d1"], encode, corpus_size=10)
    assert encode.seen == ["quokka telemetry switch"]
    two = advance_answers(one, fold(second, fold(first)), ["d2", "d1"], encode, corpus_size=10)
    assert encode.seen == ["quokka telemetry switch", "wombat burrow night"]  # d1 was not embedded again
    assert [r["doc_id"] for r in one.keyword_rows("quokka", None, None, 5)] == ["d1"]  # the old overlay still finds it
    assert two.keyword_rows("quokka", None, None, 5) == [] and two.documents["d1"] is None
    assert [r["doc_id"] for r in two.vector_rows(encode(["wombat"])[0], None, None, 5)] == ["d2"]
    assert [r["doc_id"] for r in one.vector_rows(encode(["wombat"])[0], None, None, 5)] == ["d1"]


def test_postings_score_as_bm25_over_the_live_rows():
    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 12))) for _ in range(40)]
    index = PostingsBM25()
    assert [index.add(text) for text in texts] == list(range(40))
    n, dead, size = 30, frozenset({3, 4, 17}), 500
    live = [i for i in range(n) if i not in dead]
    counts = {i: tokens(texts[i]) for i in live}
    average = sum(len(c) for c in counts.values()) / len(live)
    query = "quokka burrow the river river"
    expected = {}
    for i in live:
        score = 0.0
        for term in tokens(query):  # "river river": a repeated word counts each time, as Lance counts it
            df = sum(term in counts[j] for j in live)
            tf = counts[i].count(term)
            if tf:
                idf = math.log(1 + (size - df + 0.5) / (df + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(counts[i]) / average))
        if score:
            expected[i] = score
    mask = np.zeros(n, bool)
    mask[list(dead)] = True
    rows, scores = index.scores(query, n, mask, size, average)
    assert list(rows) == sorted(rows) and len(set(rows.tolist())) == len(rows)
    got = dict(zip(rows.tolist(), scores.tolist()))
    assert got.keys() == expected.keys() and all(math.isclose(got[i], expected[i]) for i in got)


def test_rows_a_failed_step_added_are_never_served():
    encode = Encoder()
    first = [Change("answers", "upsert", "d1", {"doc_id": "d1", "answer": "quokka telemetry switch", "tags": []})]
    one = advance_answers(None, fold(first), ["d1"], encode, corpus_size=10)
    one.chunks.add({"doc_id": "ghost", "chunk_id": 0, "answer": "quokka ghost", "question": None, "source": None, "tags": [],
                    "text": "quokka ghost"}, encode(["quokka ghost"])[0])  # a step that failed after adding its row
    second = [Change("answers", "upsert", "d2", {"doc_id": "d2", "answer": "wombat burrow", "tags": []})]
    two = advance_answers(one, fold(second, fold(first)), ["d2"], encode, corpus_size=10)
    assert {r["doc_id"] for r in two.keyword_rows("quokka", None, None, 5)} == {"d1"}
    assert "ghost" not in {r["doc_id"] for r in two.vector_rows(encode(["quokka ghost"])[0], None, None, 5)}
    assert two.live == 2


def test_an_unfiltered_vector_search_keeps_the_full_sorts_order_ties_included():
    # Many chunks share a vector (the same words): the depth best of an unfiltered search, read
    # from a partition, must be the full sort's first rows, ties broken by row as a full sort
    # does, and never a retired row. Past 64 rows the store's arrays have grown once.
    rng = random.Random(5)
    def upsert(i):
        return Change("answers", "upsert", f"d{i}", {"doc_id": f"d{i}", "answer": " ".join(rng.sample(WORDS[:4], 2)), "question": None,
                                                     "source": "s", "tags": []})
    first = [upsert(i) for i in range(90)]
    encode = Encoder()
    one = advance_answers(None, fold(first), [c.key for c in first], encode, corpus_size=100)
    second = [upsert(i) for i in range(0, 30, 3)] + [Change("answers", "delete", f"d{i}") for i in range(1, 30, 3)]
    fresh = advance_answers(one, fold(second, fold(first)), [c.key for c in second], encode, corpus_size=100)
    assert fresh.n == 100 and len(fresh.dead) == 20 and fresh.live == 80
    retired = {f"d{i}" for i in range(1, 30, 3)}
    for query in ("quokka wombat", "telemetry", "switch quokka"):
        vector = encode([query])[0]
        for depth in (1, 5, 13, 79):
            alone = [(r["doc_id"], r["chunk_id"], r["_distance"]) for r in fresh.vector_rows(vector, None, None, depth)]
            sorted_all = [(r["doc_id"], r["chunk_id"], r["_distance"]) for r in fresh.vector_rows(vector, ["s"], None, depth)]  # the full sort
            assert alone == sorted_all and len(alone) == depth and not retired & {doc for doc, _, _ in alone}


def test_fresh_chunks_are_tokenized_by_the_served_index_analyzer():
    """A tuned index without stemming or stop words: fresh chunks share its terms, so a word the
    default analysis would drop or stem is found as the table's rows find it."""
    plain = Analyzer(stem=False, stop_words=False)
    change = [Change("answers", "upsert", "d1", {"doc_id": "d1", "answer": "having the running quokka", "tags": []})]
    fresh = advance_answers(None, fold(change), ["d1"], Encoder(), corpus_size=10, analyzer=plain)
    assert [r["doc_id"] for r in fresh.keyword_rows("having", None, None, 5)] == ["d1"]
    assert fresh.keyword_rows("run", None, None, 5) == []  # unstemmed: "running" is its own term
    default = advance_answers(None, fold(change), ["d1"], Encoder(), corpus_size=10)
    assert default.keyword_rows("having", None, None, 5) == []  # stemmed to "have", a stop word
    assert [r["doc_id"] for r in default.keyword_rows("run", None, None, 5)] == ["d1"]
