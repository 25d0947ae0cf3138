"""The verdict on a candidate: its gates, judged against what is published, stored in the candidate.

Default gates compare with the release being served: the candidate's headline metric may not
fall more than `--max-regression` below the published release's, both measured in the same
run on the same split. With nothing published, the baselines gate instead. The verdict, the
gates and the sha256 of the report go into the candidate (an `evaluated` event), which is what
`recqa publish --candidate` checks.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluation.gates import Gates
from features.candidates import Candidate, Evaluation, evaluated_row
from features.releases import Release

DEFAULT_MAX_REGRESSION = 0.01
BASELINE_WARNING_MARGIN = 0.01  # relative: a baseline within 1% of the candidate is worth a look


def add_candidate_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """`--candidate` and `--max-regression`, the same for both evaluations."""
    parser.add_argument("--candidate", default=None, metavar="ID|latest",
                        help=f"the {kind} candidate to evaluate (its own configuration and tables); its verdict is stored in it")
    parser.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION,
                        help=f"fail when the headline metric falls more than this below the published release's (default {DEFAULT_MAX_REGRESSION})")


def gate_rows(
    gates: Gates,
    candidate: str,
    results: Mapping[str, Mapping[str, float]],
    published: float | None,
    max_regression: float | None,
) -> list[dict[str, Any]]:
    """Every gate by name, with its threshold, the figure it judged and whether it passed."""
    mine = results[candidate]
    rows = []
    for name, minimum in gates.minimums.items():
        figure = mine.get(name, float("nan"))
        flag = f"min-{name.split('@')[0]}"  # named as its flag: --min-ndcg gates ndcg@10 for qa
        rows.append({"name": flag, "threshold": minimum, "figure": figure, "passed": bool(figure >= minimum),
                     "text": f"{flag}: {name} {figure:.4f} against a minimum of {minimum:.4f}"})
    for baseline in gates.must_beat:
        other = results.get(baseline, {}).get(gates.metric)
        passed = other is not None and mine[gates.metric] > other
        text = f"must-beat {baseline}: " + (f"baseline '{baseline}' was not evaluated" if other is None
                                             else f"{gates.metric} {mine[gates.metric]:.4f} against {baseline}'s {other:.4f}")
        rows.append({"name": f"must-beat {baseline}", "threshold": other, "figure": mine[gates.metric], "passed": passed, "text": text})
    if published is not None and max_regression is not None:
        fall = published - mine[gates.metric]
        rows.append({"name": "max-regression", "threshold": max_regression, "figure": fall, "passed": bool(fall <= max_regression),
                     "text": f"max-regression: {gates.metric} {mine[gates.metric]:.4f} is {fall:+.4f} below the published release's {published:.4f} "
                             f"(allowed {max_regression:.4f})"})
    return rows


def decision(
    candidate: Candidate | None,
    kind: str,
    metric: str,
    figure: float,
    published: tuple[Release, float] | None,
    gates: list[dict[str, Any]],
    baselines: Mapping[str, float],
) -> dict[str, Any]:
    """The report's first block: candidate against the published release, gate by gate."""
    close = {name: value for name, value in baselines.items() if value >= figure * (1 - BASELINE_WARNING_MARGIN)}
    return {
        "candidate": candidate.id if candidate else None,
        "kind": kind,
        "passed": all(g["passed"] for g in gates),
        "headline": {"metric": metric, "candidate": figure,
                     "published": published[1] if published else None, "published_release": published[0].number if published else None},
        "gates": gates,
        "baselines": dict(baselines),
        "warnings": [f"baseline '{name}' {'beats' if value > figure else 'comes within 1% of'} the candidate on {metric} "
                     f"({value:.4f} against {figure:.4f})" for name, value in close.items()],
    }


def keep_report(out: Path, candidate: Candidate) -> Path:
    """Copy the report into `<out>/<candidate id>/`, where no other candidate's evaluation overwrites it.

    The verdict names this copy and its hash, so the report a release names stays readable
    after the next evaluation writes `<out>/report.*` again.
    """
    import shutil

    folder = out / candidate.id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "report.html"):
        shutil.copyfile(out / name, folder / name)
    return folder / "report.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published_for(candidate: Candidate, release: Release | None) -> dict[str, int]:
    """The versions of the candidate's tables that `release` serves (what its verdict is relative to)."""
    return {name: release.tables[name] for name in candidate.tables if release is not None and name in release.tables}


def record_verdict(
    warehouse: str, candidate: Candidate, figures: Mapping[str, Any], report_json: Path, release: Release | None
) -> Evaluation:
    """Store the evaluation's verdict, gates, report hash and the release it was judged against in the candidate."""
    from pipelines import lance_io

    block = figures["decision"]
    evaluation = Evaluation(
        passed=bool(block["passed"]), gates=list(block["gates"]), report_sha256=sha256_of(report_json),
        report=str(report_json.resolve()), headline={block["headline"]["metric"]: block["headline"]["candidate"]},
        created_at=datetime.now(timezone.utc),
    )
    lance_io.append_candidate_events(warehouse, [evaluated_row(candidate, evaluation)])
    return evaluation
