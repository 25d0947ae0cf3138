"""QA retrieval evaluation: every answer mode, ANN against exact search, the cache threshold.

Rankings come from `serving.answers.AnswerIndex`, the class the service answers with, over
a version of a real answers table (by default the newest, the one a run just wrote and a gate
decides whether to publish). Queries and judgements come from a BEIR folder or StackFAQ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features import beir
from features.adapters import stackfaq_documents, stackfaq_queries
from features.errors import InputError
from features.metrics import mean_at_k, recall_at_k
from features.schemas import ANSWER_INDEX, ANSWERS_TABLE, META_ENCODER
from pipelines.progress import Progress

# hybrid-rrf: the same two lists fused by reciprocal rank, the reference the served score fusion replaced
MODES = ("keyword", "vector", "hybrid", "hybrid+mmr", "hybrid-rrf")
MMR_LAMBDA = 0.7
QA_METRICS = (("ndcg", 10), ("recall", 10), ("recall", 100), ("mrr", 10))
CURVE_NPROBES = (1, 2, 5, 10, 20, 50)
CURVE_REFINE = (1, 2, 5, 10)
CACHE_THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96)
ENCODE_BATCH = 256  # texts per encoder call: the unit progress is counted in


@dataclass(frozen=True)
class QASet:
    """Queries and their judged answers: qrels[query_id][doc_id] = gain."""

    name: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]
    files: tuple[Path, ...]
    groups: dict[str, str] = dataclasses.field(default_factory=dict)  # query id -> paraphrase group (StackFAQ thread)

    def sample(self, count: int, seed: int = 0) -> "QASet":
        """A seeded random subset of the queries, for quicker runs."""
        if count >= len(self.queries):
            return self
        kept = set(random.Random(seed).sample(sorted(self.queries), count))
        return dataclasses.replace(
            self,
            name=f"{self.name} (sample of {count})",
            queries={i: t for i, t in self.queries.items() if i in kept},
            qrels={i: r for i, r in self.qrels.items() if i in kept},
            groups={i: g for i, g in self.groups.items() if i in kept},
        )


def split_by_group(qa: QASet, train_share: float = 0.5, seed: int = 0) -> tuple[QASet, QASet]:
    """(train, test): a seeded `train_share` of the paraphrase groups (StackFAQ threads) and the rest.

    Whole groups go to one side, so no rephrasing of a tuned thread is scored on the other:
    `recqa tune qa` tunes on train, evaluation can score test with the same seed and share.
    """
    if not qa.groups:
        raise ValueError(f"'{qa.name}' has no paraphrase groups to split by")
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"train_share must be in (0, 1), got {train_share}")
    groups = sorted(set(qa.groups.values()))
    random.Random(seed).shuffle(groups)
    count = min(len(groups) - 1, max(1, round(train_share * len(groups))))
    train_groups = set(groups[:count])

    def part(name: str, keep) -> QASet:
        ids = {i for i, group in qa.groups.items() if keep(group)}
        return dataclasses.replace(qa, name=f"{qa.name}/{name}", queries={i: t for i, t in qa.queries.items() if i in ids},
                                   qrels={i: r for i, r in qa.qrels.items() if i in ids},
                                   groups={i: g for i, g in qa.groups.items() if i in ids})

    return part("train", lambda g: g in train_groups), part("test", lambda g: g not in train_groups)


def without_groups(qa: QASet, groups: set[str], why: str) -> QASet:
    """The queries of every paraphrase group but `groups` (e.g. the threads a tuning run scored)."""
    kept = {i for i, group in qa.groups.items() if group not in groups}
    return dataclasses.replace(qa, name=f"{qa.name} ({why})", queries={i: t for i, t in qa.queries.items() if i in kept},
                               qrels={i: r for i, r in qa.qrels.items() if i in kept}, groups={i: g for i, g in qa.groups.items() if i in kept})


def load_beir(folder: str | Path, split: str = "train") -> QASet:
    """A BEIR folder's queries that have judgements in `qrels/<split>.tsv`."""
    folder = Path(folder)
    query_file = next((p for p in (folder / f"queries_{split}.jsonl", folder / "queries.jsonl") if p.is_file()), None)
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for path in (query_file, qrels_file):
        if path is None or not path.is_file():
            raise FileNotFoundError(f"BEIR folder '{folder}' has no {path or f'queries_{split}.jsonl'}")
    with query_file.open() as q, qrels_file.open() as r:
        queries, qrels = beir.queries(q, query_file.name), beir.qrels(r, qrels_file.name)
    return QASet(f"{folder.name}/{split}", {i: queries[i] for i in qrels if i in queries}, qrels, (query_file, qrels_file))


def load_stackfaq(path: str | Path) -> QASet:
    """StackFAQ rephrasings as queries; every answer of the rephrasing's thread is relevant."""
    path = Path(path)
    data = json.loads(path.read_text())
    by_thread: dict[str, dict[str, float]] = {}
    for document in stackfaq_documents(data):
        by_thread.setdefault(document.doc_id.rsplit("-", 1)[0], {})[document.doc_id] = 1.0
    pairs = stackfaq_queries(data)
    queries = {f"q{i}": text for i, (text, _) in enumerate(pairs)}
    qrels = {f"q{i}": by_thread.get(thread, {}) for i, (_, thread) in enumerate(pairs)}
    groups = {f"q{i}": thread for i, (_, thread) in enumerate(pairs)}
    return QASet("stackfaq", queries, qrels, (path,), groups)


def open_answers(warehouse: str, version: int | str | None = None):
    """The answers table at `version` (a number or a tag; default: the newest)."""
    import lancedb

    try:
        table = lancedb.connect(warehouse).open_table(ANSWERS_TABLE)
    except ValueError as error:
        if "was not found" not in str(error):
            raise
        raise InputError(f"no {ANSWERS_TABLE} table in '{warehouse}': build one with `recqa build-qa --warehouse {warehouse}`, "
                         "or name the warehouse that has it", field="--warehouse") from None
    if version is not None:
        table.checkout(int(version) if str(version).isdigit() else version)
    return table


# evaluation-only modes -> the request they make (mode, MMR lambda); hybrid-rrf differs by its index
_REQUESTS = {"hybrid+mmr": ("hybrid", MMR_LAMBDA), "hybrid-rrf": ("hybrid", None)}


def encode_texts(encoder, texts: Sequence[str], desc: str) -> np.ndarray:
    """The encoder's vectors of `texts`, encoded in batches so that progress can be shown."""
    if not texts:
        return encoder.encode([])
    parts = []
    with Progress(len(texts), desc, "texts") as progress:
        for start in range(0, len(texts), ENCODE_BATCH):
            batch = list(texts[start:start + ENCODE_BATCH])
            parts.append(np.asarray(encoder.encode(batch)))
            progress.update(len(batch))
    return np.concatenate(parts)


def _rankings(
    index, questions: Mapping[str, str], vectors: Mapping[str, np.ndarray], mode: str, depth: int, progress: Progress | None = None
) -> tuple[dict, float]:
    """query id -> doc ids, and the mean seconds per query."""
    base_mode, diversity = _REQUESTS.get(mode, (mode, None))
    rankings = {}
    started = time.perf_counter()
    for query_id, text in questions.items():
        hits = index.answer(text, depth, base_mode, diversity=diversity, vector=vectors[query_id])
        rankings[query_id] = [hit.id for hit in hits]
        if progress is not None:
            progress.update()
    return rankings, (time.perf_counter() - started) / max(1, len(questions))


def evaluate_modes(
    table, encoder, qa: QASet, modes: Sequence[str] = MODES, bm25_weight: float | None = None,
    metrics: Sequence[tuple[str, int]] = QA_METRICS, show_progress: bool = True,
) -> dict[str, dict[str, float]]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 (or `metrics`) of each mode, with mean latency in ms.

    Each cutoff is asked for as a request would ask (k=10, then k=100): the candidate depth
    follows k, so @10 figures are those of a k=10 request, as served. `show_progress=False`
    for callers that show their own (a tuning run scores this once per trial).
    """
    from serving.answers import AnswerIndex

    indexes = {"score": AnswerIndex(table, encoder, bm25_weight=bm25_weight), "rrf": AnswerIndex(table, encoder, fusion="rrf")}
    ids = list(qa.queries)
    texts = [qa.queries[i] for i in ids]
    vectors = dict(zip(ids, encode_texts(encoder, texts, "encode queries") if show_progress else encoder.encode(texts)))
    results = {}
    depths = sorted({k for _, k in metrics})
    total = len(modes) * len(depths) * len(ids)
    with Progress(total, f"score {', '.join(modes)}", "queries") if show_progress else contextlib.nullcontext() as progress:
        for mode in modes:
            index = indexes["rrf" if mode == "hybrid-rrf" else "score"]
            runs = {k: _rankings(index, qa.queries, vectors, mode, k, progress) for k in depths}
            row = {f"{name}@{k}": mean_at_k(runs[k][0], qa.qrels, k, [name])[name] for name, k in metrics}
            results[mode] = {**row, "queries": float(len(ids)), "ms_per_query": 1000 * runs[min(runs)][1]}
    return results


def ann_quality(table, encoder, qa: QASet, sample: int = 200, seed: int = 0) -> dict[str, Any]:
    """Vector-mode quality with the IVF-PQ index against exact search, and recall against latency.

    recall@10 here is the share of exact search's top-10 answers that the index search returns.
    """
    from serving.answers import AnswerIndex

    indexed = any(ANSWER_INDEX.column in index.columns for index in table.list_indices())
    if not indexed:  # below the ANN threshold the table is searched exactly: nothing to compare
        return {"indexed": False, "queries": 0, "curve": []}
    ids = sorted(qa.queries)
    ids = random.Random(seed).sample(ids, min(sample, len(ids)))
    vectors = dict(zip(ids, encode_texts(encoder, [qa.queries[i] for i in ids], "encode ANN queries")))
    questions = {i: qa.queries[i] for i in ids}
    judged = {i: qa.qrels[i] for i in ids}
    curve = []
    exact_index = AnswerIndex(table, encoder, exact=True)
    served_config = exact_index.index_config  # the served settings: nprobes as AnswerIndex derives it for this version
    probes = sorted({*CURVE_NPROBES, served_config.nprobes})
    with Progress((1 + len(CURVE_REFINE) * len(probes)) * len(ids), "ANN against exact search", "queries") as progress:
        exact, exact_seconds = _rankings(exact_index, questions, vectors, "vector", 10, progress)
        for refine, nprobes in itertools.product(CURVE_REFINE, probes):
            config = dataclasses.replace(ANSWER_INDEX, nprobes=nprobes, refine_factor=refine)
            found, seconds = _rankings(AnswerIndex(table, encoder, index=config), questions, vectors, "vector", 10, progress)
            recall = float(np.mean([recall_at_k(found[i], exact[i][:10], 10) or 0.0 for i in ids]))
            ndcg = mean_at_k(found, judged, 10, ["ndcg"])["ndcg"]
            curve.append({"nprobes": nprobes, "refine_factor": refine, "recall@10": recall, "ndcg@10": ndcg, "ms_per_query": 1000 * seconds})
    served = next((p for p in curve if p["nprobes"] == served_config.nprobes and p["refine_factor"] == served_config.refine_factor), None)
    exact_ndcg = mean_at_k(exact, judged, 10, ["ndcg"])["ndcg"]
    return {
        "indexed": indexed,
        "queries": len(ids),
        "served_nprobes": served_config.nprobes,
        "served_refine_factor": served_config.refine_factor,
        "exact_ms_per_query": 1000 * exact_seconds,
        # the same sampled queries through exact search and through the served index settings
        "exact_ndcg@10": exact_ndcg,
        "served_ndcg@10": served["ndcg@10"] if served else None,
        "served_ndcg_loss": exact_ndcg - served["ndcg@10"] if served else None,
        "served_recall@10": served["recall@10"] if served else None,
        "curve": curve,
    }


def cache_curve(encoder, qa: QASet, thresholds: Sequence[float] = CACHE_THRESHOLDS, seed: int = 0) -> list[dict[str, float]]:
    """Replay paraphrased questions in a shuffled order against the ones before them.

    A lookup hits when the closest earlier question has cosine >= threshold; the hit is right
    when both belong to the same group (the cached answers fit). Needs paraphrase groups.
    """
    ids = sorted(qa.groups)
    random.Random(seed).shuffle(ids)
    vectors = encode_texts(encoder, [qa.queries[i] for i in ids], "encode cache questions")
    groups = [qa.groups[i] for i in ids]
    similarity = vectors @ vectors.T
    curve = []
    for threshold in thresholds:
        hits = right = 0
        for i in range(1, len(ids)):
            j = int(np.argmax(similarity[i, :i]))
            if similarity[i, j] >= threshold:
                hits += 1
                right += groups[i] == groups[j]
        curve.append({"threshold": threshold, "hit_rate": hits / max(1, len(ids) - 1), "hit_precision": right / hits if hits else 1.0, "hits": hits})
    return curve


def table_encoder_name(table) -> str:
    return (table.schema.metadata or {}).get(META_ENCODER, b"").decode()
