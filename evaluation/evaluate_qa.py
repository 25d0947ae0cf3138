"""`recqa evaluate qa`: keyword, vector, hybrid and hybrid+MMR on judged questions, with gates.

    recqa evaluate qa --candidate latest                 # the newest build-qa candidate of ./warehouse, on StackFAQ
    recqa evaluate qa --beir ../shared/datasets/scifact --split train --warehouse /tmp/scifact
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation import report
from evaluation.gates import add_gate_arguments, gates_from_args
from evaluation.paths import existing_dir, existing_file
from evaluation.verdict import add_candidate_arguments, decision, gate_rows, keep_report, record_verdict
from evaluation.qa import MMR_LAMBDA, MODES, ann_quality, cache_curve, evaluate_modes, load_beir, load_stackfaq, open_answers, table_encoder_name, without_groups
from features.retrieval import BM25_WEIGHT, bm25_weight_of
from features.candidates import QA
from features.errors import InputError
from features.schemas import ANSWER_INDEX, ANSWERS_TABLE, DEFAULT_MODEL_NAME
from pipelines.flags import add_warehouse_argument
from pipelines.options import command_parser, parse_flags
from registry.log import find_candidate, read_releases

DEFAULT_STACKFAQ = "data/stackfaq/stackExchange-FAQ.json"
CANDIDATE = "hybrid"  # the service's default mode is what a gate judges
DEFAULT_BASELINE_GATE = "keyword"  # with nothing published, hybrid must at least beat BM25 alone
GATED = {"ndcg": "ndcg@10", "recall": "recall@10", "mrr": "mrr@10"}
BAR_METRICS = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("recqa evaluate qa", __doc__.splitlines()[0])
    add_warehouse_argument(parser, "where the answers table is")
    add_candidate_arguments(parser, QA)
    parser.add_argument("--version", default=None, help="without --candidate: a table version number or tag (default: the newest)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stackfaq", default=None, type=existing_file, help=f"StackFAQ JSON (default {DEFAULT_STACKFAQ})")
    source.add_argument("--beir", default=None, type=existing_dir, help="BEIR folder with corpus.jsonl, queries*.jsonl, qrels/")
    parser.add_argument("--split", default="train", help="BEIR qrels split")
    parser.add_argument("--max-queries", type=int, default=0, help="score a seeded sample of this many queries (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="query sample and ANN sample seed")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from " + ", ".join(MODES))
    parser.add_argument("--ann-queries", type=int, default=200, help="queries for the ANN-vs-exact figures (0: skip)")
    parser.add_argument("--bm25-weight", type=float, default=None,
                        help=f"hybrid score fusion: BM25 points per unit of cosine (default: the table's, as served; {BM25_WEIGHT} if it names none)")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, help="encoder, when the table does not name one")
    parser.add_argument("--out", default="reports/qa", help="folder for report.json and report.html")
    add_gate_arguments(parser, GATED, f"fail unless {CANDIDATE} beats this mode on nDCG@10 (repeatable)")
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from encoding.sentence_transformer import SentenceTransformerEncoder

    args = parse_flags(_parser(), argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        raise SystemExit(f"--modes: unknown {unknown}")
    if not args.beir and not args.stackfaq and not Path(DEFAULT_STACKFAQ).is_file():
        raise InputError(f"no '{DEFAULT_STACKFAQ}' here (the default queries, relative to the working directory); "
                         "run from the project folder, or name the queries with --stackfaq FILE or --beir DIR", field="--stackfaq")
    qa = load_beir(args.beir, args.split) if args.beir else load_stackfaq(args.stackfaq or DEFAULT_STACKFAQ)
    if not 0 <= args.max_regression < 1:
        raise InputError(f"must be in [0, 1), got {args.max_regression}", field="--max-regression")
    candidate = find_candidate(args.warehouse, args.candidate, QA) if args.candidate else None
    if candidate is not None and args.version is not None:
        raise InputError("a candidate names its own table version; drop --version", field="--version")
    if candidate is not None and args.bm25_weight is not None:  # the gate must judge what the service will run
        raise InputError("a candidate is judged with the BM25 weight it was built to serve with; drop --bm25-weight "
                         "(build-qa --bm25-weight sets it)", field="--bm25-weight")
    tuned_on = ((candidate.config.get("tuned") or {}).get("split") or {}) if candidate else {}
    if tuned_on.get("by") == "thread" and qa.groups:  # never score a candidate on the threads it was tuned on
        qa = without_groups(qa, set(tuned_on.get("train_groups", [])), "threads its tuning did not score")
        if not qa.queries:
            raise InputError("every judged thread was used to tune this candidate: nothing is left to evaluate it on", field="--candidate")
    if tuned_on.get("by") == "qrels split" and args.beir and tuned_on.get("qrels_split", args.split) == args.split:
        raise InputError(f"candidate {candidate.id} was tuned on the '{args.split}' judgements; evaluate it on another split "
                         "(e.g. --split test)", field="--split")
    if args.max_queries:
        qa = qa.sample(args.max_queries, args.seed)
    if CANDIDATE not in modes:
        raise InputError(f"mode '{CANDIDATE}' (what is served and gated) must be evaluated", field="--modes")
    table = open_answers(args.warehouse, candidate.tables[ANSWERS_TABLE] if candidate else args.version)
    encoder = SentenceTransformerEncoder(table_encoder_name(table) or args.model)
    release = read_releases(args.warehouse).current if candidate is not None else None
    published = None
    if release is not None and ANSWERS_TABLE in release.tables and release.tables[ANSWERS_TABLE] != int(table.version):
        old_table = open_answers(args.warehouse, release.tables[ANSWERS_TABLE])  # scored in the same run on the same queries
        old_name = table_encoder_name(old_table) or args.model
        old_encoder = encoder if old_name == encoder.name else SentenceTransformerEncoder(old_name)
        results_old = evaluate_modes(old_table, old_encoder, qa, [CANDIDATE], args.bm25_weight)
    if not args.must_beat and DEFAULT_BASELINE_GATE not in modes and (release is None or ANSWERS_TABLE not in release.tables):
        modes.append(DEFAULT_BASELINE_GATE)  # the gate when nothing is published: always judged
    results = evaluate_modes(table, encoder, qa, modes, args.bm25_weight)
    if release is not None and ANSWERS_TABLE in release.tables:
        if release.tables[ANSWERS_TABLE] == int(table.version):
            published = (release, results[CANDIDATE]["ndcg@10"])
        else:
            results["published"] = results_old[CANDIDATE]
            published = (release, results_old[CANDIDATE]["ndcg@10"])
    ann = ann_quality(table, encoder, qa, args.ann_queries, args.seed) if args.ann_queries > 0 else None
    cache = cache_curve(encoder, qa, seed=args.seed) if qa.groups else None
    gates = gates_from_args(args, GATED, "ndcg@10")
    if published is None and not gates.must_beat and DEFAULT_BASELINE_GATE in results:
        gates = dataclasses.replace(gates, must_beat=(DEFAULT_BASELINE_GATE,))
    rows = gate_rows(gates, CANDIDATE, results, published[1] if published else None, args.max_regression if published else None)
    if not rows:  # a verdict with nothing judged would pass anything
        raise InputError("no gate was judged; name one (--must-beat, --min-ndcg, ...)", field="--must-beat")
    baselines = {m: results[m]["ndcg@10"] for m in modes if m != CANDIDATE}
    figures = {
        "kind": "qa",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidate": {"id": candidate.id, "tables": candidate.tables, "created_at": candidate.created_at} if candidate else None,
        "decision": decision(candidate, QA, "ndcg@10", results[CANDIDATE]["ndcg@10"], published, rows, baselines),
        "published": {"release": published[0].number, "candidate": published[0].candidates.get(QA)} if published else None,
        "dataset": {"name": qa.name, "files": [str(p) for p in qa.files], "sha256": report.file_hash(qa.files), "queries": len(qa.queries), "seed": args.seed},
        "table": {"warehouse": args.warehouse, "version": int(table.version), "rows": table.count_rows(), "encoder": encoder.name},
        "configuration": {"build": candidate.config if candidate else None, "hybrid_fusion": "score",
                          "bm25_weight": args.bm25_weight if args.bm25_weight is not None else bm25_weight_of(table.schema.metadata),
                          "nprobes": ANSWER_INDEX.searched(table.count_rows()).nprobes, "refine_factor": ANSWER_INDEX.refine_factor,
                          "mmr_lambda": MMR_LAMBDA},
        "results": results,
        "ann": ann,
        "cache": cache,
        "gates": {"gates": rows, "failures": [g["text"] for g in rows if not g["passed"]], "passed": all(g["passed"] for g in rows)},
        "git_commit": report.git_commit(),
    }
    table_text = report.table_text(results, [*BAR_METRICS, "ms_per_query"])
    sections = [(f"Answer modes on {qa.name} ({len(qa.queries)} queries)", table_text,
                 [report.bar_plot(f"QA retrieval on {qa.name}", results, BAR_METRICS)])]
    if ann and not ann["indexed"]:
        sections.append(("ANN (IVF-PQ) against exact search", "no vector index on this table (below --ann-min-rows): searched exactly", []))
    elif ann:
        points = [{"x": p["ms_per_query"], "y": p["recall@10"], "label": f"nprobes {p['nprobes']}", "group": f"refine {p['refine_factor']}"}
                  for p in ann["curve"]]
        text = (f"served settings (nprobes {ann['served_nprobes']}, refine {ann['served_refine_factor']}) on {ann['queries']} sampled queries: "
                f"recall@10 vs exact {_fmt(ann['served_recall@10'])}, nDCG@10 {_fmt(ann['served_ndcg@10'])} "
                f"against {ann['exact_ndcg@10']:.4f} with exact search\n"
                + "\n".join(f"nprobes {p['nprobes']:>3} refine {p['refine_factor']:>3}: recall@10 {p['recall@10']:.3f}, "
                            f"nDCG@10 {p['ndcg@10']:.4f}, {p['ms_per_query']:.1f} ms" for p in ann["curve"]))
        sections.append(("ANN (IVF-PQ) against exact search", text,
                         [report.points_plot("recall@10 against latency", points, "ms per query", "recall@10 vs exact")]))
    if cache:
        text = "\n".join(f"threshold {c['threshold']:.2f}: hit rate {c['hit_rate']:.3f}, hit precision {c['hit_precision']:.3f}" for c in cache)
        lines = {"hit rate": [(c["threshold"], c["hit_rate"]) for c in cache], "hit precision": [(c["threshold"], c["hit_precision"]) for c in cache]}
        sections.append(("Semantic cache threshold (paraphrases replayed)", text, [report.line_plot("cache", lines, "cosine threshold", "share")]))
    figures = report.finish(Path(args.out), figures, sections, table_text)
    if candidate is not None:
        record_verdict(args.warehouse, candidate, figures, keep_report(Path(args.out), candidate), release)
    return figures


def _fmt(value: float | None) -> str:
    return "n/a (served settings not on the curve)" if value is None else f"{value:.4f}"
