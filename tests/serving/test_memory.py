"""Answer search from memory (serving/memory.py) against Lance's own search of the same real
table: the same rows, scores and fields, filters holding, exact k, the budget's fallback, and
the fresh answers still merged."""

from __future__ import annotations

import dataclasses
import sys
import zlib

import lance.dataset  # noqa: F401 - the module, reached through sys.modules (`lance.dataset` names a function)
import numpy as np
import pyarrow as pa
import pytest

from features.changes import Change, fold
from features.filters import answer_condition
from features.ivf import partitions_for, search_nprobes
from features.schemas import ANSWER_INDEX, ANSWER_TEXT_COLUMN, TableMetadata, answers_schema
from pipelines import lance_io
from serving import answers
from serving.answers import AnswerIndex
from serving.overlay import advance_answers
from serving.settings import ENV_MEMORY_BUDGET_MB, ServiceSettings, SettingsError
from serving.tables import nearest, vector_candidates
from tests.conftest import FakeEncoder

DIMENSION = 32
WORDS = "quokka wombat telemetry switch burrow night github strike text cross answer river".split()
SOURCES = ("forum", "docs", None)
TAGS = (["x"], ["y", "x"], None, [], ["z"])
# (sources, tags) as a request gives them: none, each alone, both, empty lists, unknown values
TIE = 1e-5  # scores this close may rank either way
FILTERS = [(None, None), (["forum"], None), (None, ["y"]), (["docs"], ["x", "z"]), ([], None), (None, []), (["nowhere"], None), (None, ["z"])]


class Encoder(FakeEncoder):
    """Random unit vectors from a text's hash: no ties between rows, no model."""

    def __init__(self) -> None:
        super().__init__(dimension=DIMENSION)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.stack([np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMENSION) for text in texts])
        return out.astype(np.float32)


def _rows(start: int, count: int, rng: np.random.Generator) -> pa.Table:
    rows = []
    for i in range(start, start + count):
        text = " ".join(rng.choice(WORDS, size=6))
        rows.append({
            "doc_id": f"d{i // 3}", "chunk_id": i % 3, "question": f"q {i}?", "answer": f"answer {i}: {text}",
            "source": SOURCES[i % 3], "tags": TAGS[i % 5], ANSWER_TEXT_COLUMN: text,
            ANSWER_INDEX.column: rng.standard_normal(DIMENSION).astype(np.float32).tolist(),
        })
    schema = answers_schema(DIMENSION).with_metadata(TableMetadata(Encoder().name, DIMENSION).to_arrow())
    return pa.Table.from_pylist(rows, schema=schema)


def _table(path, indexed: bool):
    """A real answers table of two fragments with deleted rows (row ids with gaps), its
    full-text index, and an IVF-PQ index when `indexed`."""
    import lancedb

    rng = np.random.default_rng(7)
    warehouse = str(path)
    table = lancedb.connect(warehouse).create_table("answers", _rows(0, 900, rng))
    table.add(_rows(900, 600, rng))
    if indexed:
        lance_io.create_vector_indexes(warehouse, "answers", [dataclasses.replace(ANSWER_INDEX, min_rows_for_ann=1)])
    table.delete("doc_id IN ('d3', 'd100', 'd400')")
    lance_io.create_fts_index(warehouse, "answers")
    return lancedb.connect(warehouse).open_table("answers")


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    return _table(tmp_path_factory.mktemp("flat"), indexed=False)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    return _table(tmp_path_factory.mktemp("indexed"), indexed=True)


def _queries(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.standard_normal(DIMENSION).astype(np.float32) for _ in range(n)]


def _allowed(row: dict, sources, tags) -> bool:
    return (sources is None or row["source"] in sources) and (tags is None or bool(set(row["tags"] or ()) & set(tags)))


def _same(memory_rows: list[dict], lance_rows: list[dict], score: str) -> None:
    """The same rows with the same fields, ranked the same: scores equal position by position
    to float precision, so two rows may trade places only where their scores tie to float
    rounding (Lance and numpy sum the products in different orders)."""
    fields = ("doc_id", "chunk_id", "answer", "question", "source", "tags")
    assert len(memory_rows) == len(lance_rows)
    np.testing.assert_allclose([r[score] for r in memory_rows], [r[score] for r in lance_rows], rtol=0, atol=TIE)
    ours = {(r["doc_id"], r["chunk_id"]): tuple(r[f] for f in fields) for r in memory_rows}
    theirs = {(r["doc_id"], r["chunk_id"]): tuple(r[f] for f in fields) for r in lance_rows}
    assert all(ours[key] == theirs[key] for key in ours.keys() & theirs.keys())
    edge = lance_rows[-1][score] if lance_rows else 0.0
    assert all(abs(r[score] - edge) <= TIE for r in memory_rows if (r["doc_id"], r["chunk_id"]) not in theirs)
    if score == "_distance":  # near-ties are rare among random vectors; BM25 over these 12 words ties often
        swapped = sum(a["chunk_id"] != b["chunk_id"] or a["doc_id"] != b["doc_id"] for a, b in zip(memory_rows, lance_rows))
        assert swapped <= max(2, len(memory_rows) // 50)


def test_a_table_without_an_index_is_searched_exactly_in_memory_as_lance_searches_it(flat):
    memory, lance = AnswerIndex(flat, Encoder()), AnswerIndex(flat, Encoder(), memory_budget_mb=0)
    assert memory.search_info()["path"] == "memory" and memory.search_info()["vector_search"] == "exact in memory"
    assert lance.search_info()["path"] == "lance"
    everything = flat.to_lance().to_table().to_pylist()
    for vector in _queries():
        for sources, tags in FILTERS:
            for depth in (1, 40, 2000):
                found = memory.ranked_rows(vector, (sources, tags), depth, False)
                _same(found, lance.ranked_rows(vector, (sources, tags), depth, False), "_distance")
                matching = sum(_allowed(row, sources, tags) for row in everything)
                assert len(found) == min(depth, matching)  # exact k whenever k rows match
                assert all(_allowed(row, sources, tags) for row in found)


def test_exact_search_in_memory_ranks_by_cosine_computed_independently(flat):
    everything = flat.to_lance().to_table().to_pylist()
    matrix = np.asarray([row[ANSWER_INDEX.column] for row in everything], np.float64)
    for vector in _queries(3):
        cosine = matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector))
        expected = [(everything[i]["doc_id"], everything[i]["chunk_id"]) for i in np.argsort(-cosine)[:25]]
        found = AnswerIndex(flat, Encoder()).ranked_rows(vector, (None, None), 25, False)
        assert [(r["doc_id"], r["chunk_id"]) for r in found] == expected


def test_index_candidates_re_ranked_in_memory_are_lances_refined_search(indexed):
    memory, lance = AnswerIndex(indexed, Encoder()), AnswerIndex(indexed, Encoder(), memory_budget_mb=0)
    assert memory.search_info()["vector_search"] == "Lance IVF-PQ row ids, re-ranked in memory"
    for vector in _queries():
        for filters in FILTERS:
            found = memory.ranked_rows(vector, filters, 40, False)
            _same(found, lance.ranked_rows(vector, filters, 40, False), "_distance")
            assert all(_allowed(row, *filters) for row in found)


def test_a_batch_of_queries_gets_the_candidates_lance_gives_each_alone_and_its_own_batched_call(indexed, monkeypatch):
    """The batch's query array is made here, not by pylance: the same candidates as pylance's own
    2-D query (a NaN in a vector included) and as each vector asked alone, filters and all."""
    dataset, config = indexed.to_lance(), ANSWER_INDEX.searched(indexed.count_rows())
    vectors = np.stack(_queries(5))
    vectors[3, 7] = np.nan
    expected = {}
    conditions = (None, answer_condition(["forum"], None), answer_condition(None, ["y"]), answer_condition(["docs"], ["x", "z"]))
    for condition in conditions:
        theirs = dataset.scanner(columns=[], with_row_id=True, disable_scoring_autoprojection=True, filter=condition, prefilter=True,
                                 nearest={**nearest(config, vectors, 30), "refine_factor": None}).to_table()
        expected[condition] = theirs.column("_rowid").to_numpy(), theirs.column("query_index").to_numpy()
        alone = [vector_candidates(dataset, config, vector[None, :], 30, condition)[0].tolist() for vector in vectors]
        expected[condition] += (alone,)
    module = sys.modules["lance.dataset"]
    coerce = module._coerce_query_vector

    def one_vector_only(query):
        assert np.ndim(query) == 1, "a batch went through pylance's own conversion"
        return coerce(query)

    monkeypatch.setattr(module, "_coerce_query_vector", one_vector_only)
    for condition in conditions:
        batched = vector_candidates(dataset, config, vectors, 30, condition)
        ids, query, alone = expected[condition]
        assert len(batched) == len(vectors)
        for j, found in enumerate(batched):
            assert found.tolist() == ids[query == j].tolist()  # the NaN row too, as pylance's batch treats it
            assert j == 3 or found.tolist() == alone[j]  # alone, pylance leaves a NaN vector's values as NaN: no candidates
            assert len(found) == 30


def test_with_every_partition_probed_and_every_row_a_candidate_the_index_path_is_exact(indexed):
    wide = dataclasses.replace(ANSWER_INDEX, nprobes=4096, refine_factor=1500)
    served, exact = AnswerIndex(indexed, Encoder(), index=wide), AnswerIndex(indexed, Encoder(), exact=True, memory_budget_mb=0)
    for vector in _queries(3):
        for filters in FILTERS[:4]:
            _same(served.ranked_rows(vector, filters, 1, False), exact.ranked_rows(vector, filters, 1, False), "_distance")


def test_an_index_on_a_table_under_min_rows_probed_is_searched_in_every_partition(indexed):
    """1,497 rows: fewer than MIN_ROWS_PROBED, so the served search probes every partition: it
    finds what probing them all explicitly finds, more of exact search's top 10 than one probe."""
    rows = indexed.count_rows()
    served = AnswerIndex(indexed, Encoder())
    assert served.index_config.nprobes == partitions_for(rows) == search_nprobes(rows)

    def top10(index: AnswerIndex) -> list[list[str]]:
        return [[row["doc_id"] for row in index.ranked_rows(v, (None, None), 10, False)] for v in _queries(20)]

    def recall(found: list[list[str]]) -> float:
        return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))

    truth = top10(AnswerIndex(indexed, Encoder(), exact=True))
    every = AnswerIndex(indexed, Encoder(), index=dataclasses.replace(ANSWER_INDEX, nprobes=4096))
    narrow = AnswerIndex(indexed, Encoder(), index=dataclasses.replace(ANSWER_INDEX, nprobes=1))
    assert narrow.index_config.nprobes == 1  # a set nprobes is kept
    assert top10(served) == top10(every)
    assert recall(top10(served)) > recall(top10(narrow)) + 0.2


@pytest.mark.parametrize("fixture", ["flat", "indexed"])
def test_keyword_rows_take_their_fields_from_memory_unchanged(fixture, request):
    table = request.getfixturevalue(fixture)
    memory, lance = AnswerIndex(table, Encoder()), AnswerIndex(table, Encoder(), memory_budget_mb=0)
    for question in ("quokka telemetry", "github strike river", "night"):
        for filters in FILTERS:
            _same(memory.ranked_rows(question, filters, 40, False), lance.ranked_rows(question, filters, 40, False), "_score")


@pytest.mark.parametrize("fixture", ["flat", "indexed"])
def test_answers_in_every_mode_and_with_diversity_are_the_same_through_either_path(fixture, request, monkeypatch):
    """The vectors and fields from memory; the keyword half from Lance on both sides, as BM25 over
    these 12 words ties often and Lance orders tied rows its own way (the keyword half from
    memory: tests/serving/test_keywords.py, on real text)."""
    table = request.getfixturevalue(fixture)
    monkeypatch.setattr(answers, "load_keywords", lambda *args: (None, "off in this test"))
    memory, lance = AnswerIndex(table, Encoder()), AnswerIndex(table, Encoder(), memory_budget_mb=0)
    assert memory.search_info()["path"] == "memory" and not memory.keyword_in_memory
    for question in ("quokka telemetry", "github strike river"):
        for mode in ("vector", "keyword", "hybrid"):
            for diversity in (None, 0.5):
                for sources, tags in FILTERS[:4]:
                    asked = dict(k=7, mode=mode, sources=sources, tags=tags, diversity=diversity)
                    one, other = memory.answer(question, **asked), lance.answer(question, **asked)
                    assert [h.id for h in one] == [h.id for h in other] and [h.fields for h in one] == [h.fields for h in other]
                    np.testing.assert_allclose([h.score for h in one], [h.score for h in other], rtol=1e-4, atol=1e-5)


def test_a_budget_the_vectors_or_the_fields_do_not_fit_falls_back_to_lance(flat):
    rows = flat.count_rows()
    vectors_only = (rows * DIMENSION * 4) // (1 << 20) + 1  # the vectors fit, the fields then push it over
    tight = AnswerIndex(flat, Encoder(), memory_budget_mb=0)
    assert tight.search_info()["path"] == "lance" and "vectors need" in tight.search_info()["reason"]
    wide = AnswerIndex(flat, Encoder(), memory_budget_mb=vectors_only)
    assert wide.search_info()["path"] == "memory"  # the whole small table fits in 1 MiB: check the limit below
    memory = wide._memory
    assert memory is not None and memory.nbytes < (vectors_only << 20)
    from serving.memory import AnswerMemory

    held, plan = AnswerMemory.load(flat.to_lance(), ANSWER_INDEX.column, rows * DIMENSION * 4 + 1000)
    assert held is None and plan.path == "lance" and "fields need" in plan.reason


def test_the_budget_variable_is_typed_and_a_bad_value_is_refused_naming_it():
    assert ServiceSettings.from_env({ENV_MEMORY_BUDGET_MB: "256"}).memory_budget_mb == 256
    assert ServiceSettings.from_env({}).memory_budget_mb > 0
    for bad in ("-1", "lots", "1.5"):
        with pytest.raises(SettingsError, match=ENV_MEMORY_BUDGET_MB):
            ServiceSettings.from_env({ENV_MEMORY_BUDGET_MB: bad})


@pytest.mark.parametrize("fixture", ["flat", "indexed"])
def test_fresh_answers_are_merged_the_same_over_either_path(fixture, request):
    table = request.getfixturevalue(fixture)
    encoder = Encoder()
    question = "platypus quokka"  # no table row says platypus
    changes = [
        Change("answers", "upsert", "new", {"doc_id": "new", "answer": "a platypus", "question": None, "source": "forum", "tags": ["y"]}),
        Change("answers", "delete", "d10"),
        Change("answers", "upsert", "d20", {"doc_id": "d20", "answer": "river night", "question": None, "source": "docs", "tags": ["x"]}),
    ]
    fresh = advance_answers(None, fold(changes), (c.key for c in changes), encoder.encode, corpus_size=table.count_rows())
    memory = AnswerIndex(table, encoder).with_fresh(fresh)
    lance = AnswerIndex(table, encoder, memory_budget_mb=0).with_fresh(fresh)
    vector = encoder.encode([f"{question}"])[0]
    for query in (vector, question):
        score = "_score" if isinstance(query, str) else "_distance"
        for filters in FILTERS[:4]:
            found = memory.ranked_rows(query, filters, 2000, False)
            _same(found, lance.ranked_rows(query, filters, 2000, False), score)
            assert "d10" not in {r["doc_id"] for r in found}
            assert {r["answer"] for r in found if r["doc_id"] == "d20"} <= {"river night"}
    assert memory.answer("platypus", k=5, mode="keyword")[0].id == "new"
    assert memory.answer("river night", k=3, mode="hybrid", sources=["docs"])[0].id == "d20"


def test_taken_rows_read_each_field_when_asked_and_give_what_the_table_holds(flat):
    from serving.memory import AnswerMemory

    dataset = flat.to_lance()
    held, _ = AnswerMemory.load(dataset, ANSWER_INDEX.column, 1 << 30)
    positions = np.array([5, 0, held.rows - 1, 5])
    rows = held.take(positions, False, ANSWER_INDEX.column)
    table = held.fields.take(pa.array(positions)).to_pylist()
    assert [row["doc_id"] for row in rows] == [want["doc_id"] for want in table]
    assert all(set(row) == {"doc_id"} for row in rows)  # nothing else turned into Python yet
    for row, want in zip(rows, table):
        assert {field: row[field] for field in want} == want
    assert set(rows[0]) == set(table[0])  # read once, then kept
    with pytest.raises(KeyError):
        rows[0]["no_such_field"]
    with_vectors = held.take(positions[:1], True, ANSWER_INDEX.column)[0]
    stored = dataset.take([5], columns=[ANSWER_INDEX.column]).to_pylist()[0][ANSWER_INDEX.column]  # memory rows: scan order
    np.testing.assert_allclose(with_vectors[ANSWER_INDEX.column], stored, rtol=1e-5, atol=1e-6)
