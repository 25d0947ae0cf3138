"""`recqa evaluate recs`: ALS as served against popularity, item-kNN and BPR, with gates.

    recqa evaluate recs                                  # bundled ms-store, temporal split
    recqa evaluate recs --split random --fraction 0.2 --seed 1 --min-ndcg 0.05 --must-beat popularity
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation import report
from evaluation.gates import add_gate_arguments, gates_from_args
from evaluation.paths import existing_file
from evaluation.recs import METHODS, RECS_METRICS, Dataset, load_contract, load_ms_store, rankings_by_id, score, tune
from features.interactions import build_matrix
from features.schemas import DEFAULT_MODEL_NAME, ITEMS_TABLE, USERS_TABLE, Interaction
from features.splits import Split, random_split, temporal_split

DEFAULT_INTERACTIONS = "data/ms-store/demoUsage.csv"
DEFAULT_ITEMS = "data/ms-store/demoCatalog.csv"
GATED = {"ndcg": "ndcg", "recall": "recall", "precision": "precision", "map": "map"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recqa evaluate recs", description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", default=DEFAULT_INTERACTIONS, type=existing_file, help="local file")
    parser.add_argument("--items", default=DEFAULT_ITEMS, type=existing_file, help="local file")
    parser.add_argument("--input-format", default="ms-store", choices=["ms-store", "contract"])
    parser.add_argument("--split", default="temporal", choices=["temporal", "random"], help="per-user leave-last-n-out or random holdout")
    parser.add_argument("--last-n", type=int, default=1, help="temporal split: items held out per user")
    parser.add_argument("--fraction", type=float, default=0.2, help="random split: share of each user's items held out")
    parser.add_argument("--seed", type=int, default=0, help="split and model seed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="encoder for the items' content vectors (build-recs)")
    parser.add_argument("--out", default="reports/recs", help="folder for report.json and report.html")
    parser.add_argument("--work", default=None, help="folder for the training-split tables (default: a temp dir)")
    add_gate_arguments(parser, GATED, "fail unless ALS beats this method on nDCG@k (repeatable)")
    return parser


def _split(args: argparse.Namespace, events: list[Interaction]) -> Split:
    if args.split == "temporal":
        return temporal_split(events, args.last_n)
    return random_split(events, args.fraction, args.seed)


def served_als(train: Split, dataset: Dataset, params: dict[str, Any], args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    """Train ALS with the real build-recs job on the training events; rank as the service does."""
    import lancedb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.encoders import SentenceTransformerEncoder
    from pipelines import build_recs
    from serving.recommender import Recommender

    data = work / "train"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([e.__dict__ for e in train.train]), data / "interactions.parquet")
    pq.write_table(pa.Table.from_pylist([i.__dict__ for i in dataset.items]), data / "items.parquet")
    warehouse = str(work / "warehouse")
    build_recs.run([
        "--warehouse", warehouse, "--input-format", "contract", "--timestamp-format", "epoch_s", "--model", args.model,
        "--interactions", str(data / "interactions.parquet"), "--items", str(data / "items.parquet"),
        "--rejects", str(work / "rejects"), "--random-state", str(args.seed),
        *(f"--{name}={value}" for name, value in params.items()),
    ])
    db = lancedb.connect(warehouse)
    recommender = Recommender(db.open_table(USERS_TABLE), db.open_table(ITEMS_TABLE), SentenceTransformerEncoder(args.model))
    return {user_id: [i for i, _ in recommender.for_user(user_id, args.k).items] for user_id in train.test_items()}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "als" not in methods:
        raise SystemExit(f"--methods: unknown {unknown}" if unknown else "--methods: 'als' (the candidate) is required")
    loader = load_ms_store if args.input_format == "ms-store" else load_contract
    dataset = loader(args.interactions, args.items)
    split = _split(args, dataset.events)
    validation = _split(args, split.train)  # tuning never sees the test split
    item_ids = [item.item_id for item in dataset.items]
    matrix = build_matrix(split.train, item_ids)
    work = Path(args.work or tempfile.mkdtemp(prefix="recqa-eval-recs-"))
    results, tuning = {}, {}
    for method in methods:
        started = time.perf_counter()
        params, tried = tune(method, validation, item_ids, args.k, args.seed)
        if method == "als":
            rankings = served_als(split, dataset, params, args, work)
        else:
            factory, _ = METHODS[method]
            rankings = rankings_by_id(matrix, factory(matrix.matrix, seed=args.seed, **params), list(split.test_items()), args.k)
        results[method] = score(rankings, split, matrix, args.k)
        results[method]["seconds"] = time.perf_counter() - started
        tuning[method] = {"chosen": params, "validation_ndcg": tried}
    gates = gates_from_args(args, GATED, "ndcg")
    failures = gates.check("als", results)
    figures = {
        "kind": "recs",
        "dataset": {"files": [str(p) for p in dataset.files], "sha256": report.file_hash(dataset.files),
                    "events": len(dataset.events), "items": len(dataset.items)},
        "split": {"kind": args.split, "last_n": args.last_n, "fraction": args.fraction, "seed": args.seed,
                  "train_events": len(split.train), "test_events": len(split.test), "test_users": len(split.test_items())},
        "k": args.k,
        "results": results,
        "tuning": tuning,
        "gates": gates.summary(failures),
        "git_commit": report.git_commit(),
    }
    columns = [*RECS_METRICS, "coverage", "mean_popularity"]
    table = report.table_text(results, columns)
    plot = report.bar_plot(f"Recommendations, {args.split} split, @{args.k}", results, [*RECS_METRICS, "coverage"])
    return report.finish(Path(args.out), figures, [(f"Methods at k={args.k} on the test split", table, [plot])], table)
