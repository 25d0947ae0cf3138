"""`recqa tune recs`: search ALS and event weighting on a validation split; the result is what gets built.

    recqa tune recs --out tuned.json                      # bundled ms-store, 40 trials
    recqa build-recs --config tuned.json                  # build (and then serve) the tuned model

Takes every build-recs flag (inputs, formats, weighting, the ALS flags as the starting point)
and reads the inputs with the build's readers. The test split (as `recqa evaluate recs` makes
it, same flags) is set aside untouched; the search trains on the rest minus a validation split
carved from it, and scores each point as served: `build_matrix` with the build's weighting,
`fit_als`, `RecommenderCore.for_user` (seen items excluded, popular fallback), nDCG@k.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evaluation.inputs import changes_at, read_recs
from evaluation.recs import Dataset
from evaluation.search import (
    Choice, Range, Space, best_trial, edge_warning, on_edge, parse_bounds, parse_tune_args, tune_parser, search, start_point, write_json,
)
from features.factorization import fit_als
from features.interactions import DEFAULT_EVENT, SECONDS_PER_DAY, WeightConfig, build_matrix
from features.metrics import mean_at_k
from features.ranking import RecommenderCore
from features.schemas import ALSConfig, Interaction
from features.splits import Split, SplitSpec
from pipelines import build_recs
from pipelines.progress import write_line
from pipelines.transforms.read import use_beam_options

PROG = "recqa tune recs"
DEFAULT_TRIALS = 40
# The ALS space. Ranges are wide on purpose: a grid capped at 32 factors and regularization 10
# put the chosen point on its edge every time on a public benchmark.
ALS_SPACE: dict[str, Range] = {
    "factors": Range(8, 256, log=True, integer=True),
    # up to 1e4: on the bundled data the best points of a 1e-3..1e2 / 0.1..100 space sat on
    # both upper edges, and widening gained 0.03 validation nDCG@10 (benchmarks/RESULTS.md)
    "regularization": Range(1e-3, 1e4, log=True),
    "alpha": Range(0.1, 1e4, log=True),
    "iterations": Range(5, 50, log=False, integer=True),
}
# Event weights are searched relative to the most frequent kind, which keeps its weight: alpha
# already scales every confidence, so moving all weights together would search nothing new.
EVENT_WEIGHT_RATIO = 32.0  # each other kind in [reference / 32, reference * 32]
# Decay is searched when the events span at least this long; the half-life from a 50th of the
# span (steep) to twice it (the oldest event keeps 71% of its weight: barely any decay).
DECAY_MIN_SPAN_DAYS = 28.0
HALF_LIFE_SPAN_SHARES = (1 / 50, 2.0)
EVENT_PREFIX = "event_weight."


def _parser() -> argparse.ArgumentParser:
    parser = tune_parser(PROG, __doc__.splitlines()[0], "build-recs", DEFAULT_TRIALS, "split and search seed (ALS fits use --random-state, as the build does)")
    parser.add_argument("--k", type=int, default=10, help="nDCG cutoff")
    parser.add_argument("--split", default="temporal", choices=["temporal", "random"], help="as `recqa evaluate recs`")
    parser.add_argument("--last-n", type=int, default=1, help="temporal split: items held out per user")
    parser.add_argument("--fraction", type=float, default=None, help="as `recqa evaluate recs`: each user's last share by time (temporal) or a share at random (random, default 0.2)")
    parser.add_argument("--space", action="append", metavar="NAME=LOW:HIGH", help="replace the bounds of a searched range (repeatable)")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    """(tune flags, build-recs flags). Flags neither knows, nor Beam, are an error naming them."""
    tune_args, build_args, _, _ = parse_tune_args(_parser(), build_recs, argv, PROG)
    return tune_args, build_args


def split_events(events: Sequence[Interaction], kind: str, last_n: int, fraction: float | None, seed: int) -> Split:
    """The split `recqa evaluate recs` makes with the same flags (features.splits.SplitSpec)."""
    return SplitSpec(kind, last_n, fraction, seed).apply(events)


def search_space(events: Sequence[Interaction], weights: WeightConfig) -> tuple[dict[str, Range | Choice], dict[str, Any]]:
    """The space for these events, and what was decided about the weighting (for the report).

    Event weights are searched only when the events have more than one kind; decay only when
    they span at least DECAY_MIN_SPAN_DAYS.
    """
    space: dict[str, Range | Choice] = dict(ALS_SPACE)
    kinds = Counter((e.event or DEFAULT_EVENT).lower() for e in events)
    notes: dict[str, Any] = {"event_kinds": dict(kinds)}
    if len(kinds) > 1:
        reference = min(kinds, key=lambda kind: (-kinds[kind], kind))
        base = weights.event_weights[reference]
        notes["reference_event"] = {"kind": reference, "weight": base}
        for kind in sorted(kinds):
            if kind != reference:
                space[EVENT_PREFIX + kind] = Range(base / EVENT_WEIGHT_RATIO, base * EVENT_WEIGHT_RATIO, log=True)
    times = [e.timestamp for e in events]
    span_days = (max(times) - min(times)) / SECONDS_PER_DAY if times else 0.0
    notes["span_days"] = round(span_days, 2)
    if span_days >= DECAY_MIN_SPAN_DAYS:
        low, high = (share * span_days for share in HALF_LIFE_SPAN_SHARES)
        space["decay"] = Choice((False, True))
        space["half_life_days"] = Range(low, high, log=True, when=("decay", True))
    return space, notes


def starting_values(args: argparse.Namespace, weights: WeightConfig) -> dict[str, Any]:
    """The build flags' values under the space's names."""
    return {
        "factors": args.factors, "regularization": args.regularization, "alpha": args.alpha, "iterations": args.iterations,
        "decay": args.half_life_days is not None, "half_life_days": args.half_life_days,
        **{EVENT_PREFIX + kind: weight for kind, weight in weights.event_weights.items()},
    }


def build_config(args: argparse.Namespace, params: Mapping[str, Any]) -> dict[str, Any]:
    """A point of the space as build-recs flags (argparse dests): what `build-recs --config` applies."""
    config = {
        "factors": int(params.get("factors", args.factors)),
        "regularization": float(params.get("regularization", args.regularization)),
        "alpha": float(params.get("alpha", args.alpha)),
        "iterations": int(params.get("iterations", args.iterations)),
        "random_state": args.random_state,
        "half_life_days": (params["half_life_days"] if params.get("decay") else None) if "decay" in params else args.half_life_days,
        "min_user_interactions": args.min_user_interactions,
        "min_item_interactions": args.min_item_interactions,
        "event_weight": args.event_weight,
    }
    searched = {name[len(EVENT_PREFIX):]: value for name, value in params.items() if name.startswith(EVENT_PREFIX)}
    if searched:  # after the flags' own pairs: later pairs win in build-recs
        config["event_weight"] = [*(args.event_weight or []), *(f"{kind}={value:.6g}" for kind, value in sorted(searched.items()))]
    return config


def score_config(config: Mapping[str, Any], validation: Split, item_ids: list[str], k: int) -> float:
    """Validation nDCG@k of one build configuration, ranked as the service ranks."""
    args = argparse.Namespace(**config)
    matrix = build_matrix(validation.train, item_ids, build_recs.weight_config(args))
    als = ALSConfig(config["factors"], config["regularization"], config["alpha"], config["iterations"], config["random_state"])
    try:
        factors = fit_als(matrix.matrix, als)
    except ArithmeticError:  # non-finite factors: a point of the space that does not train
        return 0.0
    core = RecommenderCore.from_fit(matrix, factors, als)
    relevant = validation.test_items()
    rankings = {user_id: [item_id for item_id, _ in core.for_user(user_id, k).items] for user_id in relevant}
    return mean_at_k(rankings, relevant, k, ["ndcg"])["ndcg"]


def tune(
    dataset: Dataset,
    tune_args: argparse.Namespace,
    build_args: argparse.Namespace,
    space: Space | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The tuning result (see the module doc); `space` replaces the one made from the data."""
    started = time.perf_counter()
    split = split_events(dataset.events, tune_args.split, tune_args.last_n, tune_args.fraction, tune_args.seed)
    # From here on only the training part: the test part is left for `recqa evaluate recs`.
    validation = split_events(split.train, tune_args.split, tune_args.last_n, tune_args.fraction, tune_args.seed)
    if not validation.test:
        raise ValueError("the validation split is empty: no user has enough distinct items (lower --last-n or use --split random)")
    item_ids = [item.item_id for item in dataset.items]
    weights = build_recs.weight_config(build_args)
    derived, notes = search_space(validation.train, weights)
    space = dict(parse_bounds(tune_args.space, derived) if space is None else space)
    metric = f"ndcg@{tune_args.k}"

    def objective(params: dict[str, Any]) -> float:
        return score_config(build_config(build_args, params), validation, item_ids, tune_args.k)

    default_config = build_config(build_args, {})
    default = score_config(default_config, validation, item_ids, tune_args.k)
    start = start_point(space, starting_values(build_args, weights))
    tried = search(objective, space, start, tune_args.trials, tune_args.seed, tune_args.timeout_seconds, metric, progress)
    best = best_trial(tried, metric)
    chosen = "search" if best[metric] >= default else "default"  # the starting flags may lie outside the space
    config = build_config(build_args, best["params"]) if chosen == "search" else default_config
    edges = on_edge(space, best["params"]) if chosen == "search" else []
    if edges and progress:
        progress(edge_warning(space, best["params"], edges))
    return {
        "kind": "recs",
        "config": config,
        "metric": metric,
        "best": max(best[metric], default),
        "default": default,
        "chosen": chosen,
        "best_params": best["params"],
        "on_edge": edges,
        "trials": tried,
        "space": {name: dim.to_json() for name, dim in space.items()},
        "weighting": notes,
        "split": {**SplitSpec(tune_args.split, tune_args.last_n, tune_args.fraction, tune_args.seed).described(),
                  "tuned_on": "validation split of the training part; the test part is not read",
                  "train_events": len(validation.train), "validation_events": len(validation.test),
                  "validation_users": len(validation.test_items())},
        "dataset": {"inputs": dataset.inputs, "events": len(dataset.events), "items": len(dataset.items)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse, read, search, write `--out`; returns the result and `out`, the file written."""
    tune_args, build_args, _, beam_args = parse_tune_args(_parser(), build_recs, argv, PROG)
    use_beam_options(beam_args)  # e.g. --s3_endpoint_url: the file systems the inputs are read through
    changes = changes_at(build_args.warehouse, None)  # the latest snapshot: what a build now would apply
    dataset = read_recs(build_args, changes)
    result = {**tune(dataset, tune_args, build_args, progress=write_line), "changes_version": changes.version}  # build --config compares it
    return {**result, "out": str(write_json(tune_args.out, result))}
