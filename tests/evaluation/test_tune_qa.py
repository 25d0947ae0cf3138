"""`recqa tune qa`: hybrid BM25 weight, tokenizer and chunk size tuned on the train threads only."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from evaluation.qa import QASet, evaluate_modes, split_by_group
from evaluation.search import Range
from evaluation.tune_qa import ScratchTables, parse_args, qa_space, run, tune
from features.errors import InputError
from features.schemas import ANSWERS_TABLE, FTSConfig, QADocument, TableMetadata, answers_schema
from pipelines import build_qa, lance_io
from tests.conftest import STACKFAQ, FakeEncoder

# Each thread has a plain answer and a chatty one: its topic word among stop words. A question
# asks about its own topic in another thread's chatty words, so bag-of-words vectors (which count
# stop words) rank the other thread's chatty answer first, and BM25 (which drops them) does not:
# how much BM25 counts in the hybrid changes the score.
TOPICS = ("password", "account", "invoice", "export")
CHATTY = ("how do i do this and what is it for", "where is it and why is it there",
          "can you tell me what it is about", "is there any way to do it at all")
THREADS = {
    f"t{i}": (f"Question about {topic}?", [f"{topic} settings explained step by step", f"{CHATTY[i]} {topic}"],
              [f"{CHATTY[(i + 1) % 4]} {topic}", f"{CHATTY[(i + 2) % 4]} {topic}", f"{topic} help"])
    for i, topic in enumerate(TOPICS)
}


class HashingEncoder(FakeEncoder):
    """Bag of words hashed into the fake's dimensions: vector search that differs from BM25, no model."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def judged() -> tuple[list[QADocument], QASet]:
    documents, queries, qrels, groups = [], {}, {}, {}
    for thread, (question, answers, rephrasings) in THREADS.items():
        documents += [QADocument(f"{thread}-{i}", answer, question) for i, answer in enumerate(answers)]
        for i, text in enumerate(rephrasings):
            queries[f"{thread}-q{i}"] = text
            qrels[f"{thread}-q{i}"] = {f"{thread}-{a}": 1.0 for a in range(len(answers))}
            groups[f"{thread}-q{i}"] = thread
    return documents, QASet("threads", queries, qrels, (), groups)


def writer(tmp_path, documents, encoder, overlap: int):
    """build-qa's rows (its chunking) written without Beam or the model: `chunk_words -> warehouse`."""
    def build(chunk_words: int) -> str:
        warehouse = str(tmp_path / f"chunk-{chunk_words}")
        rows = [row for d in documents for row in build_qa.chunk_rows((d.doc_id, [d]), chunk_words, overlap)]
        vectors = encoder.encode([row["text"] for row in rows])
        table = lance_io.to_arrow([{**row, "vector": v.tolist()} for row, v in zip(rows, vectors)], answers_schema(encoder.dimension))
        lance_io.write_table(warehouse, ANSWERS_TABLE, table, TableMetadata(encoder.name, encoder.dimension).to_arrow())
        return warehouse

    return build


def _tune(tmp_path, *flags: str, encoder=None, space=None):
    documents, qa = judged()
    encoder = encoder or HashingEncoder()
    tune_args, build_args, _ = parse_args(["--out", "unused.json", "--chunk-overlap", "4", "--chunk-words-grid", "8,160", *flags])
    tables = ScratchTables(writer(tmp_path, documents, HashingEncoder(), 4))
    return tune(qa, tables, encoder, tune_args, build_args, space=space), tables, qa


def test_the_chosen_bm25_weight_scores_best_on_the_train_threads_among_those_tried(tmp_path):
    # BM25 scores of an 8-answer corpus are small: the weights that matter lie above the served range
    space = {**qa_space((8, 160)), "bm25_weight": Range(0.01, 10.0)}
    result, tables, qa = _tune(tmp_path, "--trials", "10", space=space)
    scores = [t["ndcg@10"] for t in result["trials"]]
    assert len(set(scores)) > 2, scores  # the knobs change the score: choosing among them means something
    assert result["chosen"] == "search" and result["best"] == max(scores)
    assert result["config"]["bm25_weight"] == result["best_params"]["bm25_weight"]
    assert len({t["params"]["bm25_weight"] for t in result["trials"]}) == 10
    # scored again, independently, on the train threads: the same figures, and none above the chosen one
    train, _ = split_by_group(qa, 0.5, 0)
    best = result["best_params"]
    for trial in result["trials"]:
        p = trial["params"]
        table = tables.open(p["chunk_words"], FTSConfig(stem=p["fts_stem"], remove_stop_words=p["fts_stop_words"]))
        again = evaluate_modes(table, HashingEncoder(), train, ["hybrid"], p["bm25_weight"], metrics=[("ndcg", 10)])["hybrid"]["ndcg@10"]
        assert again == pytest.approx(trial["ndcg@10"]) and again <= result["best"] + 1e-12
    # the starting flags (bm25 weight 0.004) are tried first, clipped into the space, and scored as they are for `default`
    assert result["trials"][0]["params"] == {"chunk_words": 160, "fts_stem": True, "fts_stop_words": True, "bm25_weight": 0.01}
    default = evaluate_modes(tables.open(160, FTSConfig()), HashingEncoder(), train, ["hybrid"], 0.004, metrics=[("ndcg", 10)])
    assert result["default"] == pytest.approx(default["hybrid"]["ndcg@10"])
    assert best["chunk_words"] in (8, 160) and result["scratch"]["chunk_sizes_built"] == sorted(tables.warehouses)


def test_the_test_threads_queries_are_never_scored(tmp_path):
    encoder = HashingEncoder()
    result, _, qa = _tune(tmp_path, "--trials", "4", encoder=encoder)
    split = result["split"]
    assert set(split["train_groups"]) | set(split["test_groups"]) == set(THREADS)
    assert not set(split["train_groups"]) & set(split["test_groups"])
    test_texts = {text for q, text in qa.queries.items() if qa.groups[q] in split["test_groups"]}
    assert encoder.seen and not set(encoder.seen) & test_texts
    assert set(encoder.seen) == {text for q, text in qa.queries.items() if qa.groups[q] in split["train_groups"]}


def test_the_thread_split_is_seeded_whole_threads_and_covers_every_query():
    _, qa = judged()
    train, test = split_by_group(qa, 0.5, seed=3)
    assert (train.queries, test.queries) == tuple(s.queries for s in split_by_group(qa, 0.5, seed=3))
    assert len(set(train.groups.values())) == 2 and not set(train.groups.values()) & set(test.groups.values())
    assert {**train.queries, **test.queries} == qa.queries and set(train.qrels) == set(train.queries)


def test_the_config_keys_are_build_qa_dests_and_parse_back(tmp_path):
    result, _, _ = _tune(tmp_path, "--trials", "3")
    config = result["config"]
    argv = []
    for dest, value in config.items():
        flag = f"--{dest.replace('_', '-')}"
        argv += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    args, rest = build_qa.parse_args(argv)
    assert rest == [] and {dest: getattr(args, dest) for dest in config} == config
    assert build_qa.fts_config(args) == FTSConfig(stem=config["fts_stem"], remove_stop_words=config["fts_stop_words"])


def test_unknown_flags_and_the_test_split_are_refused(tmp_path, capsys):
    with pytest.raises(InputError, match=r"unknown flag --bm25-wieght \(did you mean --bm25-weight\?\)"):
        parse_args(["--out", "x", "--bm25-wieght", "1"])
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--beir", str(tmp_path), "--split", "test"])
    assert "--split test" in capsys.readouterr().err
    tune_args, build_args, rest = parse_args(["--out", "x", "--chunk-words", "100", "--runner=FnApiRunner"])
    assert tune_args.chunk_words_grid == (50, 100, 200) and rest == ["--chunk-words", "100", "--runner=FnApiRunner"]


@pytest.mark.slow
def test_run_builds_each_chunk_size_with_the_real_job_and_writes_the_json(tmp_path):
    data = json.loads(STACKFAQ.read_text())
    small = tmp_path / "faq.json"
    small.write_text(json.dumps({"root": {"qapair": data["root"]["qapair"][:6]}}))  # six threads
    out = tmp_path / "tuned-qa.json"
    result = run(["--out", str(out), "--stackfaq", str(small), "--documents", str(small), "--trials", "4",
                  "--chunk-words-grid", "48,160", "--work", str(tmp_path / "work")])
    written = json.loads(out.read_text())
    assert written["kind"] == "qa" and written["metric"] == "ndcg@10" and len(written["trials"]) == 4
    assert set(written["config"]) == {"chunk_words", "chunk_overlap", "fts_stem", "fts_stop_words", "bm25_weight"}
    assert written["split"]["train_queries"] > 0 and written["split"]["test_queries"] > 0
    assert set(result["scratch"]["chunk_sizes_built"]) <= {48, 160}
