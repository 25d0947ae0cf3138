"""The hyper-parameter search shared by `recqa tune recs` and `recqa tune qa`.

A search space is an ordered mapping of names to `Range`s (numbers, searched on a log or a
linear scale) and `Choice`s; Optuna's TPE sampler, seeded, proposes points, the caller's
objective scores them on a validation split, and the starting configuration is tried first.
A best point within `EDGE_SHARE` of a bound (on its own scale) is reported as on the edge:
the optimum may lie outside the searched space.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.progress import Progress

EDGE_SHARE = 0.05  # "on the edge": within 5% of the range (on its scale) of a bound


@dataclass(frozen=True)
class Range:
    """A number in [low, high]; `log` searches its logarithm; `integer` rounds it.

    `when` makes the range conditional: it is searched only when the named choice has the value.
    """

    low: float
    high: float
    log: bool = True
    integer: bool = False
    when: tuple[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"a range needs low < high (and low > 0 on a log scale), got [{self.low}, {self.high}]")

    def clip(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.integer else float(value)

    def position(self, value: float) -> float:
        """Where `value` lies between low (0) and high (1) on the range's scale."""
        scale = math.log if self.log else float
        return (scale(value) - scale(self.low)) / (scale(self.high) - scale(self.low))

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "integer": self.integer,
                **({"when": list(self.when)} if self.when else {})}


@dataclass(frozen=True)
class Choice:
    """One of a few values (booleans, chunk sizes): no edge to be on."""

    values: tuple[Any, ...]
    when: tuple[str, Any] | None = None

    def clip(self, value: Any) -> Any:
        return value if value in self.values else self.values[0]

    def to_json(self) -> dict[str, Any]:
        return {"choices": list(self.values), **({"when": list(self.when)} if self.when else {})}


Space = Mapping[str, Range | Choice]


def parse_bounds(pairs: list[str] | None, space: Space) -> dict[str, Range | Choice]:
    """`NAME=LOW:HIGH` flags (repeatable) replace the bounds of ranges of `space`."""
    result = dict(space)
    for pair in pairs or []:
        name, _, bounds = pair.partition("=")
        low, _, high = bounds.partition(":")
        if name not in result or not isinstance(result[name], Range):
            ranges = ", ".join(n for n, d in result.items() if isinstance(d, Range))
            raise ValueError(f"--space: '{name}' is not a searched range here (ranges: {ranges})")
        try:
            result[name] = Range(float(low), float(high), result[name].log, result[name].integer, result[name].when)
        except ValueError as error:
            raise ValueError(f"--space {pair}: expected {name}=LOW:HIGH with numbers, LOW < HIGH ({error})") from None
    return result


def active(space: Space, params: Mapping[str, Any]) -> dict[str, Range | Choice]:
    """The dimensions of `space` that apply to `params` (conditional ones only when their condition holds)."""
    return {name: dim for name, dim in space.items() if dim.when is None or params.get(dim.when[0]) == dim.when[1]}


def start_point(space: Space, values: Mapping[str, Any]) -> dict[str, Any]:
    """The starting configuration as a point of the space (clipped into it)."""
    point: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.when is None or point.get(dim.when[0]) == dim.when[1]:
            point[name] = dim.clip(values[name])
    return point


def on_edge(space: Space, params: Mapping[str, Any], share: float = EDGE_SHARE) -> list[str]:
    """Names of the ranges whose value in `params` lies within `share` of a bound."""
    return [name for name, dim in active(space, params).items()
            if isinstance(dim, Range) and name in params and not share < dim.position(params[name]) < 1 - share]


def _suggest(trial, space: Space) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.when is not None and params.get(dim.when[0]) != dim.when[1]:
            continue
        if isinstance(dim, Choice):
            params[name] = trial.suggest_categorical(name, list(dim.values))
        elif dim.integer:
            params[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
        else:
            params[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    return params


def search(
    objective: Callable[[dict[str, Any]], float],
    space: Space,
    start: Mapping[str, Any],
    trials: int,
    seed: int,
    timeout_seconds: float | None = None,
    metric: str = "ndcg@10",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every trial's params and score, in the order tried; `start` (a point of the space) first.

    Optuna's TPE, seeded with `seed`; trials run one at a time, so a seed gives the same trials.
    """
    import optuna

    # ERROR: a failed trial's warning repeats the error the search raises (or a Ctrl-C) with a traceback
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(dict(start))
    tried: list[dict[str, Any]] = []

    def run_trial(trial) -> float:
        params = _suggest(trial, space)
        started = time.perf_counter()
        value = float(objective(params))
        tried.append({"params": params, metric: value, "seconds": round(time.perf_counter() - started, 3)})
        bar.update()
        if progress:
            best = max(t[metric] for t in tried)
            shown = " ".join(f"{k}={_short(v)}" for k, v in params.items())
            progress(f"trial {len(tried)}/{trials}: {metric} {value:.4f} (best {best:.4f}{bar.eta_text()})  {shown}")
        return value

    # the trial lines carry the count and the time left, so no separate progress log lines
    with Progress(trials, "trials", "trials", log_lines=False) as bar:
        study.optimize(run_trial, n_trials=trials, timeout=timeout_seconds)
    return tried


def best_trial(tried: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The highest-scoring trial; on a tie the earliest (the starting point is tried first)."""
    if not tried:
        raise RuntimeError("no trial finished: raise --trials or --timeout-seconds")
    return max(tried, key=lambda t: t[metric])  # max keeps the first of equal keys


def edge_warning(space: Space, params: Mapping[str, Any], names: list[str]) -> str:
    """The stderr line that says the best point lies on the edge of the searched space."""
    parts = [f"{n}={_short(params[n])} in [{_short(space[n].low)}, {_short(space[n].high)}]" for n in names]
    return (f"warning: the best point is on the edge of the searched space ({'; '.join(parts)}); "
            f"the optimum may lie outside: widen it with --space NAME=LOW:HIGH")


def tune_parser(prog: str, description: str, build: str, default_trials: int, seed_help: str):
    """The flags every `recqa tune <kind>` has; the build's own flags are parsed by its parser."""
    import argparse

    from pipelines.options import command_parser

    parser = command_parser(prog, description, add_help=False, allow_abbrev=False, usage=f"{prog} --out FILE [tune flags] [{build} flags]")
    parser.add_argument("--out", required=True, help=f"where to write the tuning result (JSON); its `config` feeds {build} --config")
    parser.add_argument("--trials", type=int, default=default_trials, help=f"points to try, the starting flags first (default {default_trials})")
    parser.add_argument("--timeout-seconds", type=float, default=None, help="stop starting trials after this long (default: no limit)")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    return parser


def parse_tune_args(parser, build_job, argv, prog: str) -> tuple[Any, Any, list[str], list[str]]:
    """(tune flags, the build's flags, the rest, Beam's flags among it) for `recqa tune <kind>`: tune's own flags first,
    then the build's parser; a flag neither knows, nor Beam, fails naming it and its close match.

    Beam's flags are kept in the rest: they set the file systems the inputs are read through
    (`--s3_endpoint_url`, ...) and reach the builds `recqa tune qa` runs.
    """
    import sys

    from pipelines.options import flag_names

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(parser.format_help())
        build_job.parse_args(["--help"], prog=prog)  # prints the build flags and exits
    tune_args, rest = parser.parse_known_args(argv)
    build_args, beam_args = build_job.parse_args(rest, prog=prog, also=flag_names(parser))
    if tune_args.trials < 1:
        parser.error(f"--trials must be >= 1, got {tune_args.trials}")
    return tune_args, build_args, rest, beam_args


def write_json(path: str | Path, result: Mapping[str, Any]) -> Path:
    """Write the tuning result; the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
