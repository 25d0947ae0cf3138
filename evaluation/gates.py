"""Publishing gates: thresholds a candidate's figures must meet, with the reason when they do not."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Gates:
    """Minimums on the candidate's metrics and the baselines it must beat on the gated metric."""

    minimums: Mapping[str, float]  # metric name -> minimum value
    must_beat: tuple[str, ...] = ()
    metric: str = "ndcg"  # what `must_beat` compares

    def check(self, candidate: str, results: Mapping[str, Mapping[str, float]]) -> list[str]:
        """Reasons the candidate fails, empty when it passes."""
        mine = results[candidate]
        failures = [
            f"{candidate} {name} {mine.get(name, float('nan')):.4f} < minimum {minimum:.4f}"
            for name, minimum in self.minimums.items()
            if not mine.get(name, float("-inf")) >= minimum
        ]
        for baseline in self.must_beat:
            if baseline not in results:
                failures.append(f"baseline '{baseline}' was not evaluated")
            elif not mine[self.metric] > results[baseline][self.metric]:
                failures.append(f"{candidate} {self.metric} {mine[self.metric]:.4f} does not beat {baseline} {results[baseline][self.metric]:.4f}")
        return failures


    def summary(self, failures: list[str]) -> dict:
        """The gates and their verdict, as the report records them."""
        return {"minimums": dict(self.minimums), "must_beat": list(self.must_beat), "failures": failures, "passed": not failures}


def add_gate_arguments(parser: argparse.ArgumentParser, metric_names: dict[str, str], baselines_help: str) -> None:
    """`--min-<metric>` flags (option -> metric key) and a repeatable `--must-beat`."""
    for option, key in metric_names.items():
        parser.add_argument(f"--min-{option}", type=float, default=None, help=f"fail when the candidate's {key} is lower")
    parser.add_argument("--must-beat", action="append", default=[], metavar="METHOD", help=baselines_help)


def gates_from_args(args: argparse.Namespace, metric_names: dict[str, str], metric: str) -> Gates:
    minimums = {key: getattr(args, f"min_{option.replace('-', '_')}") for option, key in metric_names.items()}
    return Gates({k: v for k, v in minimums.items() if v is not None}, tuple(args.must_beat), metric)
