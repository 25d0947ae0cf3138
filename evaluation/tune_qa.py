"""`recqa tune qa`: search the hybrid BM25 weight, the full-text tokenizer and the chunk size on train queries.

    recqa tune qa --out tuned-qa.json                     # bundled StackFAQ: half of its threads
    recqa tune qa --out tuned-qa.json --beir ../shared/datasets/scifact --split train \\
        --documents ../shared/datasets/scifact/corpus.jsonl --input-format contract \\
        --map doc_id=_id --map question=title --map answer=text

Takes every build-qa flag (the documents and how to read them; the chunk size, tokenizer and
BM25 weight flags are the starting point). Each chunk size of the grid is a real `build-qa`
run into a scratch warehouse (it re-embeds every answer); each tokenizer rebuilds the scratch
table's full-text index with the FTSConfig build-qa builds with; the BM25 weight is applied at
query time. A point is scored as `recqa evaluate qa` scores the served hybrid mode (nDCG@10,
`evaluate_modes`), on judged queries of a train split only: a seeded share of the StackFAQ
threads (whole threads; `evaluation.qa.split_by_group` gives evaluation the rest), or a BEIR
folder's `--split train` qrels.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.paths import existing_dir, existing_file
from evaluation.qa import QASet, evaluate_modes, load_beir, load_stackfaq, open_answers, split_by_group
from evaluation.search import (
    Choice, Range, Space, best_trial, edge_warning, on_edge, parse_bounds, parse_tune_args, tune_parser, search, start_point, write_json,
)
from features.schemas import ANSWER_TEXT_COLUMN, ANSWERS_TABLE, FTSConfig
from pipelines import build_qa, lance_io
from pipelines.progress import write_line
from registry.log import ChangeLog, read_changes

PROG = "recqa tune qa"
DEFAULT_TRIALS = 30
DEFAULT_STACKFAQ = "data/stackfaq/stackExchange-FAQ.json"
DEFAULT_TRAIN_SHARE = 0.5
TUNED = ("ndcg", 10)  # the metric `recqa evaluate qa` gates on
METRIC = f"{TUNED[0]}@{TUNED[1]}"
# BM25 points per unit of cosine: at 1e-4 hybrid is the vector ranking with BM25 breaking ties,
# at 0.1 a typical BM25 score (5-30) outweighs any cosine difference.
BM25_WEIGHT_RANGE = Range(1e-4, 0.1, log=True)
CHUNK_GRID_FACTORS = (0.5, 1.0, 2.0)  # default chunk sizes: half, the starting one, double


def _chunk_grid(value: str) -> tuple[int, ...]:
    try:
        grid = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated word counts, got '{value}'") from None
    if not grid or grid[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive word counts, got '{value}'")
    return grid


def _parser() -> argparse.ArgumentParser:
    parser = tune_parser(PROG, __doc__.splitlines()[0], "build-qa", DEFAULT_TRIALS, "train split, query sample and search seed")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stackfaq", default=None, type=existing_file, help=f"StackFAQ JSON (default {DEFAULT_STACKFAQ}); pass the same file as --documents")
    source.add_argument("--beir", default=None, type=existing_dir, help="BEIR folder: its --split qrels are the judged queries")
    parser.add_argument("--split", default="train", help="BEIR qrels split to tune on (never 'test')")
    parser.add_argument("--train-share", type=float, default=DEFAULT_TRAIN_SHARE, help="StackFAQ: share of the threads tuned on")
    parser.add_argument("--max-queries", type=int, default=0, help="tune on a seeded sample of this many train queries (0: all)")
    parser.add_argument("--chunk-words-grid", type=_chunk_grid, default=None,
                        help="chunk sizes to build and try, comma-separated (default: half, the starting --chunk-words, double)")
    parser.add_argument("--work", default=None, help="folder for the scratch warehouses (default: a temp dir, removed after)")
    parser.add_argument("--space", action="append", metavar="NAME=LOW:HIGH", help="replace the bounds of a searched range (bm25_weight)")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.Namespace, list[str]]:
    """(tune flags, build-qa flags, the argv for build-qa runs). Flags neither knows, nor Beam, are an error."""
    parser = _parser()
    tune_args, build_args, rest, _ = parse_tune_args(parser, build_qa, argv, PROG)  # Beam's flags reach the builds in rest
    if tune_args.beir and tune_args.split == "test":
        parser.error("--split test: tuning on the test queries would leave nothing honest to evaluate on")
    grid = tune_args.chunk_words_grid or tuple(max(1, round(f * build_args.chunk_words)) for f in CHUNK_GRID_FACTORS)
    tune_args.chunk_words_grid = tuple(sorted({*grid, build_args.chunk_words}))
    if too_small := [c for c in tune_args.chunk_words_grid if c <= build_args.chunk_overlap]:
        parser.error(f"--chunk-words-grid: {too_small} not above --chunk-overlap {build_args.chunk_overlap}")
    return tune_args, build_args, rest


def judged_queries(tune_args: argparse.Namespace) -> QASet:
    """Every judged query of the source (the split into train and test comes after)."""
    if tune_args.beir:
        return load_beir(tune_args.beir, tune_args.split)
    return load_stackfaq(tune_args.stackfaq or DEFAULT_STACKFAQ)


def train_part(qa: QASet, train_share: float, seed: int, max_queries: int = 0) -> tuple[QASet, dict[str, Any]]:
    """The queries tuned on, and which they are: whole paraphrase groups (threads) when the set has
    them, else the whole set (a BEIR train split is a train split already)."""
    if qa.groups:
        train, test = split_by_group(qa, train_share, seed)
        described = {"source": qa.name, "by": "thread", "train_share": train_share, "seed": seed,
                     "train_queries": len(train.queries), "test_queries": len(test.queries),
                     "train_groups": sorted(set(train.groups.values())), "test_groups": sorted(set(test.groups.values())),
                     "test_scored": False}
    else:
        train, described = qa, {"source": qa.name, "by": "qrels split", "train_queries": len(qa.queries)}
    if max_queries:
        train = train.sample(max_queries, seed)
        described["sampled_queries"] = len(train.queries)
    return train, described


def qa_space(chunk_grid: Sequence[int]) -> dict[str, Range | Choice]:
    return {
        "chunk_words": Choice(tuple(chunk_grid)),
        "fts_stem": Choice((True, False)),
        "fts_stop_words": Choice((True, False)),
        "bm25_weight": BM25_WEIGHT_RANGE,
    }


def starting_values(build_args: argparse.Namespace) -> dict[str, Any]:
    return {"chunk_words": build_args.chunk_words, "fts_stem": build_args.fts_stem,
            "fts_stop_words": build_args.fts_stop_words, "bm25_weight": build_args.bm25_weight}


def build_config(build_args: argparse.Namespace, params: Mapping[str, Any]) -> dict[str, Any]:
    """A point as build-qa flags (argparse dests): what `build-qa --config` applies."""
    values = {**starting_values(build_args), **params}
    return {"chunk_words": int(values["chunk_words"]), "chunk_overlap": build_args.chunk_overlap,
            "fts_stem": bool(values["fts_stem"]), "fts_stop_words": bool(values["fts_stop_words"]),
            "bm25_weight": float(values["bm25_weight"])}


class CachedEncoder:
    """The encoder, remembering each text's vector: every trial scores the same queries."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self._vectors: dict[str, np.ndarray] = {}
        self.name = encoder.name

    @property
    def dimension(self) -> int:
        return self._encoder.dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._encoder.encode(missing)))
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, self.dimension), dtype=np.float32)


class ScratchTables:
    """Answers tables per chunk size, built on first use by `build(chunk_words) -> warehouse`;
    the full-text index is rebuilt whenever a trial asks for another tokenizer."""

    def __init__(self, build: Callable[[int], str], progress: Callable[[str], None] | None = None) -> None:
        self._build = build
        self._progress = progress
        self.warehouses: dict[int, str] = {}
        self._tokenizer: dict[int, FTSConfig] = {}
        self.fts_builds = 0

    def open(self, chunk_words: int, fts: FTSConfig):
        """The answers table of this chunk size, its full-text index built with `fts`."""
        if chunk_words not in self.warehouses:
            if self._progress:
                self._progress(f"building answers with --chunk-words {chunk_words} (re-embeds every answer)")
            self.warehouses[chunk_words] = self._build(chunk_words)
        warehouse = self.warehouses[chunk_words]
        if self._tokenizer.get(chunk_words) != fts:  # unknown after a build: rebuilt once
            lance_io.create_fts_index(warehouse, ANSWERS_TABLE, ANSWER_TEXT_COLUMN, fts)
            self._tokenizer[chunk_words] = fts
            self.fts_builds += 1
        return open_answers(warehouse)


def tune(
    qa: QASet,
    tables: ScratchTables,
    encoder,
    tune_args: argparse.Namespace,
    build_args: argparse.Namespace,
    space: Space | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The tuning result; only the train part of `qa` is ever scored."""
    started = time.perf_counter()
    train, described = train_part(qa, tune_args.train_share, tune_args.seed, tune_args.max_queries)
    if not qa.groups:
        described["qrels_split"] = tune_args.split  # evaluation refuses to score a candidate on these judgements
    del qa  # from here on only the train part
    if not train.queries:
        raise ValueError(f"no judged train queries in '{train.name}'")
    space = dict(parse_bounds(tune_args.space, qa_space(tune_args.chunk_words_grid)) if space is None else space)
    encoder = CachedEncoder(encoder)

    def objective(params: Mapping[str, Any]) -> float:
        config = build_config(build_args, params)
        table = tables.open(config["chunk_words"], FTSConfig(stem=config["fts_stem"], remove_stop_words=config["fts_stop_words"]))
        return evaluate_modes(table, encoder, train, ["hybrid"], config["bm25_weight"], metrics=[TUNED],
                              show_progress=False)["hybrid"][METRIC]  # the trials bar shows progress

    values = starting_values(build_args)
    start = start_point(space, values)
    tried = search(objective, space, start, tune_args.trials, tune_args.seed, tune_args.timeout_seconds, METRIC, progress)
    default = tried[0][METRIC] if start == {name: values[name] for name in start} else objective(values)
    best = best_trial(tried, METRIC)
    chosen = "search" if best[METRIC] >= default else "default"
    edges = on_edge(space, best["params"]) if chosen == "search" else []
    if edges and progress:
        progress(edge_warning(space, best["params"], edges))
    return {
        "kind": "qa",
        "config": build_config(build_args, best["params"] if chosen == "search" else {}),
        "metric": METRIC,
        "best": max(best[METRIC], default),
        "default": default,
        "chosen": chosen,
        "best_params": best["params"],
        "on_edge": edges,
        "trials": tried,
        "space": {name: dim.to_json() for name, dim in space.items()},
        "split": described,
        "encoder": encoder.name,
        "scratch": {"chunk_sizes_built": sorted(tables.warehouses), "fts_indexes_built": tables.fts_builds},
        "seconds": round(time.perf_counter() - started, 1),
    }


def builder(build_argv: Sequence[str], work: Path, changes: ChangeLog | None = None) -> Callable[[int], str]:
    """`chunk_words -> warehouse`: a real build-qa run with the given flags into a scratch warehouse,
    applying `changes` (the real warehouse's change log snapshot; the scratch one has none)."""
    def build(chunk_words: int) -> str:
        warehouse = str(work / f"chunk-{chunk_words}")
        build_qa.run([*build_argv, "--warehouse", warehouse, "--chunk-words", str(chunk_words), "--rejects", str(work / "rejects")],
                     changes=changes if changes is not None else ChangeLog((), 0))
        return warehouse

    return build


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, build scratch tables, search, write `--out`; returns the result and `out`, the file written."""
    from evaluation import report
    from encoding.sentence_transformer import SentenceTransformerEncoder

    tune_args, build_args, build_argv = parse_args(argv)
    qa = judged_queries(tune_args)
    work = Path(tune_args.work or tempfile.mkdtemp(prefix="recqa-tune-qa-"))
    progress = write_line  # above the trials bar, on stderr
    try:
        changes = read_changes(build_args.warehouse)  # the latest snapshot: what a build now would apply
        tables = ScratchTables(builder(build_argv, work, changes), progress)
        result = tune(qa, tables, SentenceTransformerEncoder(build_args.model), tune_args, build_args, progress=progress)
    finally:
        if not tune_args.work:
            shutil.rmtree(work, ignore_errors=True)
    result["dataset"] = {"documents": build_args.documents, "queries": {"name": qa.name, "files": [str(p) for p in qa.files],
                                                                         "sha256": report.file_hash(qa.files)}}
    result["changes_version"] = changes.version  # build --config compares it with the snapshot it applies
    return {**result, "out": str(write_json(tune_args.out, result))}
