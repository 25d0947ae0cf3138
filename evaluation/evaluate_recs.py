"""`recqa evaluate recs`: a candidate's ALS, exactly as built and served, against baselines and the published release.

    recqa evaluate recs --candidate latest --must-beat popularity   # the newest build-recs candidate of ./warehouse
    recqa evaluate recs --candidate recs-20261130T101500-3fa9c1 --split temporal --fraction 0.2
    recqa evaluate recs --input-format contract --interactions events.parquet --items items.csv --factors 64
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation import report
from evaluation.gates import add_gate_arguments, gates_from_args
from evaluation.inputs import changes_at, combined_hash, read_recs
from evaluation.recs import METHODS, RECS_METRICS, Dataset, grid_size, rankings_by_id, score, tune
from evaluation.verdict import add_candidate_arguments, decision, gate_rows, keep_report, record_verdict
from features.candidates import RECS, Candidate
from features.errors import InputError
from features.factorization import fit_als
from features.interactions import build_matrix
from features.ranking import RecommenderCore
from features.releases import Release
from features.schemas import ITEMS_TABLE, USERS_TABLE
from features.splits import Split, SplitSpec, random_split, split_from_pairs
from pipelines import build_recs
from pipelines.flags import add_warehouse_argument
from pipelines.progress import Progress
from pipelines.options import command_parser, flag_names, refuse_unknown
from registry.log import find_candidate, read_candidates, read_releases

PROG = "recqa evaluate recs"
CANDIDATE = "als"  # the candidate's row in the results
BASELINES = ("popularity", "item_knn", "bpr")
DEFAULT_BASELINE_GATE = "popularity"  # with nothing published, the candidate must at least beat this
GATED = {"ndcg": "ndcg", "recall": "recall", "precision": "precision", "map": "map"}


def _parser() -> argparse.ArgumentParser:
    parser = command_parser(
        PROG, __doc__.splitlines()[0],
        epilog="Without --candidate, every build-recs flag (inputs, --map, --factors, --config, ...) describes what to evaluate.",
    )
    add_warehouse_argument(parser, "where the candidate and the published release are")
    add_candidate_arguments(parser, RECS)
    parser.add_argument("--split", default="temporal", choices=["temporal", "random"], help="per-user holdout by time or at random (default temporal)")
    parser.add_argument("--last-n", type=int, default=1, help="temporal split: items held out per user (default 1)")
    parser.add_argument("--fraction", type=float, default=None, help="share of each user's items held out: the last by time (temporal) or at random (random, default 0.2)")
    parser.add_argument("--split-file", default=None, help="score this split instead: an interactions file (same format and --map as the inputs) whose user-item pairs are the test part")
    parser.add_argument("--seed", type=int, default=0, help="random split and baseline seed (default 0)")
    parser.add_argument("--k", type=int, default=10, help="cutoff (default 10)")
    parser.add_argument("--methods", default=",".join(BASELINES), help="baselines, comma-separated, from " + ", ".join(BASELINES))
    parser.add_argument("--out", default="reports/recs", help="folder for report.json and report.html (default reports/recs)")
    add_gate_arguments(parser, GATED, "fail unless the candidate beats this baseline on nDCG@k (repeatable)")
    return parser


def _build_args(candidate: Candidate | None, rest: list[str]) -> argparse.Namespace:
    """build-recs' flags: the candidate's own, or those given here."""
    if candidate is not None:
        if rest:
            raise InputError(f"{rest[:3]}: a candidate is evaluated with its own inputs and settings; drop these flags", field="--candidate")
        args, _ = build_recs.parse_args([])
        vars(args).update(candidate.config["flags"])
        weights = build_recs.weight_config(args)
        rebuilt = {"als": dataclasses.asdict(build_recs.als_config(args)),
                   "weights": {**dataclasses.asdict(weights), "event_weights": dict(weights.event_weights)}}
        for part, value in rebuilt.items():  # e.g. default event weights changed since the build
            if value != candidate.config.get(part):
                raise InputError(f"candidate {candidate.id}: its flags give {part} {value}, not the recorded {candidate.config.get(part)}; "
                                 "rebuild it with this recqa", field="--candidate")
        return args
    args, _ = build_recs.parse_args(rest, prog=PROG)  # _parse refused any flag but build-recs'
    return args


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """evaluate's flags, and the build-recs flags given beside them; any other flag (Beam's too:
    evaluation runs no pipeline) fails before any work, naming it and its close match."""
    parser, build = _parser(), build_recs.arg_parser(PROG)
    args, rest = parser.parse_known_args(argv)
    _, left = build.parse_known_args(rest)
    refuse_unknown(left, PROG, [*flag_names(parser), *flag_names(build)], beam=False)
    return args, rest


def _spec(args: argparse.Namespace) -> SplitSpec:
    return SplitSpec(args.split, args.last_n, args.fraction, args.seed)


def _check_tuned_split(args: argparse.Namespace, candidate: Candidate | None) -> None:
    """A candidate tuned on a validation split of one split's training part is scored on that split's test part only."""
    tuned = ((candidate.config.get("tuned") or {}).get("split") or {}) if candidate else {}
    if not tuned:
        return
    keys = ("kind", "last_n", "fraction", "seed")
    tuned_on = {k: tuned[k] for k in keys if k in tuned}
    if args.split_file or tuned_on != _spec(args).described():
        raise InputError(f"candidate {candidate.id} was tuned inside the training part of the split {tuned_on}; evaluate it on "
                         f"that split (e.g. --split {tuned_on.get('kind')}), or its test part may have been tuned on", field="--split")


def _check_inputs(candidate: Candidate | None, dataset: Dataset) -> None:
    """The inputs read now must be the ones the candidate's build read (same content hash)."""
    for kind, recorded in (candidate.inputs if candidate else {}).items():
        now = dataset.inputs.get(kind, {}).get("sha256")
        if recorded.get("sha256") and now != recorded["sha256"]:
            what = f"{kind} input '{recorded['path']}'" if recorded.get("path") else f"change log at version {recorded.get('version')}"
            raise InputError(f"{what} changed since candidate {candidate.id} was built "
                             f"(sha256 {now} now, {recorded['sha256']} then): evaluate a candidate built from these files", field="--candidate")


def served_rankings(build_args: argparse.Namespace, split: Split, dataset: Dataset, k: int) -> dict[str, list[str]]:
    """Fit ALS on the training part with exactly these build settings; rank as the service does."""
    weights = build_recs.weight_config(build_args)
    als = build_recs.als_config(build_args)
    matrix = build_matrix(split.train, [item.item_id for item in dataset.items], weights)
    core = RecommenderCore.from_fit(matrix, fit_als(matrix.matrix, als), als, {item.item_id: item.category for item in dataset.items})
    return {user_id: [item_id for item_id, _ in core.for_user(user_id, k).items] for user_id in split.test_items()}


def _published(warehouse: str) -> tuple[Release, Candidate | None] | None:
    """The release being served, with the recs candidate it released (None for a pre-candidate release)."""
    current = read_releases(warehouse).current
    if current is None or USERS_TABLE not in current.tables or ITEMS_TABLE not in current.tables:
        return None
    wanted = current.candidates.get(RECS)
    return current, next((c for c in read_candidates(warehouse) if c.id == wanted), None)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, rest = _parse(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in BASELINES]:
        raise InputError(f"unknown baselines {unknown}; expected some of {list(BASELINES)}", field="--methods")
    if not 0 <= args.max_regression < 1:
        raise InputError(f"must be in [0, 1), got {args.max_regression}", field="--max-regression")
    candidate = find_candidate(args.warehouse, args.candidate, RECS) if args.candidate else None
    build_args = _build_args(candidate, rest)
    _check_tuned_split(args, candidate)
    # exactly the change log snapshot the candidate's build applied; without one, the latest, as a build now would
    changes = changes_at(args.warehouse, int(candidate.config.get("changes_version", 0)) if candidate else None)
    dataset = read_recs(build_args, changes)
    _check_inputs(candidate, dataset)
    if args.split_file:
        from pipelines.transforms.read import read_input

        spec = dataclasses.replace(build_recs.input_specs(build_args)[0], path=args.split_file)
        split = split_from_pairs(dataset.events, {(e.user_id, e.item_id) for e in read_input(spec).records})
    else:
        split = _spec(args).apply(dataset.events)
    if not split.test:
        raise InputError("the split holds nothing out: no user has enough items", field="--split")
    item_ids = [item.item_id for item in dataset.items]
    matrix = build_matrix(split.train, item_ids)
    results, tuning = {}, {}
    published = _published(args.warehouse) if candidate is not None else None
    rescore = published is not None and published[1] is not None and published[1].id != (candidate.id if candidate else None)
    if (published is None or published[1] is None) and not args.must_beat and DEFAULT_BASELINE_GATE not in methods:
        methods.append(DEFAULT_BASELINE_GATE)  # the gate when nothing is published: always judged
    # one unit per model fitted: the candidate's ALS, the published one's, each baseline's grid and final fit
    fits = 1 + int(rescore) + sum(grid_size(method) + 1 for method in methods)
    with Progress(fits, "evaluate recs", "fits") as progress:
        started = time.perf_counter()
        results[CANDIDATE] = score(served_rankings(build_args, split, dataset, args.k), split, matrix, args.k)
        results[CANDIDATE]["seconds"] = time.perf_counter() - started
        progress.update()
        published_figure = None
        if rescore:
            old_args = _build_args(published[1], [])
            results["published"] = score(served_rankings(old_args, split, dataset, args.k), split, matrix, args.k)
            published_figure = (published[0], results["published"]["ndcg"])
            progress.update()
        elif published is not None and published[1] is not None:
            published_figure = (published[0], results[CANDIDATE]["ndcg"])  # the candidate is what is published
        validation = _spec(args).apply(split.train) if not args.split_file else random_split(split.train, 0.2, args.seed)
        for method in methods:
            started = time.perf_counter()
            params, tried = tune(method, validation, item_ids, args.k, args.seed, progress.update)  # baselines tuned on train only
            factory, _ = METHODS[method]
            rankings = rankings_by_id(matrix, factory(matrix.matrix, seed=args.seed, **params), list(split.test_items()), args.k)
            results[method] = score(rankings, split, matrix, args.k)
            results[method]["seconds"] = time.perf_counter() - started
            tuning[method] = {"chosen": params, "validation_ndcg": tried}
            progress.update()
    gates = gates_from_args(args, GATED, "ndcg")
    if published_figure is None and not gates.must_beat and DEFAULT_BASELINE_GATE in results:
        gates = dataclasses.replace(gates, must_beat=(DEFAULT_BASELINE_GATE,))
    rows = gate_rows(gates, CANDIDATE, results, published_figure[1] if published_figure else None,
                     args.max_regression if published_figure else None)
    if not rows:  # a verdict with nothing judged would pass anything
        raise InputError("no gate was judged; name one (--must-beat, --min-ndcg, ...)", field="--must-beat")
    figures = {
        "kind": "recs",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidate": {"id": candidate.id, "tables": candidate.tables, "created_at": candidate.created_at} if candidate else None,
        "decision": decision(candidate, RECS, f"ndcg@{args.k}", results[CANDIDATE]["ndcg"], published_figure, rows,
                             {m: results[m]["ndcg"] for m in methods}),
        "dataset": {"files": list(dataset.files), "inputs": dataset.inputs, "sha256": combined_hash(dataset.inputs), "changes_version": changes.version,
                    "events": len(dataset.events), "items": len(dataset.items)},
        "split": {"kind": "file" if args.split_file else args.split, "last_n": args.last_n, "fraction": args.fraction,
                  "seed": args.seed, "file": args.split_file, "train_events": len(split.train), "test_events": len(split.test),
                  "test_users": len(split.test_items())},
        "configuration": {"als": dataclasses.asdict(build_recs.als_config(build_args)),
                          "weights": dataclasses.asdict(build_recs.weight_config(build_args)), "encoder": build_args.model},
        "published": {"release": published[0].number, "candidate": published[1].id if published[1] else None} if published else None,
        "k": args.k,
        "results": results,
        "tuning": tuning,
        "gates": {"gates": rows, "failures": [g["text"] for g in rows if not g["passed"]], "passed": all(g["passed"] for g in rows)},
        "git_commit": report.git_commit(),
    }
    columns = [*RECS_METRICS, "coverage", "mean_popularity"]
    table = report.table_text(results, columns)
    plot = report.bar_plot(f"Recommendations, {figures['split']['kind']} split, @{args.k}", results, [*RECS_METRICS, "coverage"])
    sections = [(f"Methods at k={args.k} on the test split", table, [plot])]
    figures = report.finish(Path(args.out), figures, sections, table)
    if candidate is not None:
        kept = keep_report(Path(args.out), candidate)
        record_verdict(args.warehouse, candidate, figures, kept, published[0] if published else None)
    return figures
