"""The evaluation report: one JSON file with every figure, an HTML page with plots, a console table.

The page opens with the decision (`figures["decision"]`, when the evaluation made one): the
candidate against the published release or the baselines, each gate with its threshold and
figure, a warning when a baseline comes close; then the run it was made on. The JSON carries
what a reader needs to trust or reproduce a figure: dataset hash, table versions,
configuration, seed and git commit. Plots are PNGs embedded in the page, so the HTML is one
self-contained file; metrics of different scales get different axes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")  # names before any "@k"
CATALOGUE_METRICS = ("coverage", "mean_popularity")
BASELINE_MARGIN = 0.01  # relative: a baseline this close to the candidate's headline figure is flagged


def file_hash(paths: Iterable[Path]) -> str:
    """sha256 over the files' bytes, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def git_commit(folder: Path | None = None) -> str | None:
    """The checkout's commit (with `-dirty` when it has changes), or None outside git."""
    cwd = folder or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def table_text(rows: Mapping[str, Mapping[str, float]], columns: list[str]) -> str:
    """A fixed-width table: one row per method, one column per metric."""
    width = max([len("method"), *map(len, rows)]) + 2
    cell = {c: max(12, len(c) + 2) for c in columns}  # a long column name keeps a space before it
    lines = ["method".ljust(width) + "".join(c.rjust(cell[c]) for c in columns)]
    for name, row in rows.items():
        cells = "".join((f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))).rjust(cell[c]) for c in columns)
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rendered(figure) -> str:
    """The figure as base64 PNG; the figure is closed."""
    try:
        return _png(figure)
    finally:
        _pyplot().close(figure)


def metric_groups(metrics: list[str]) -> list[tuple[str, list[str]]]:
    """Metrics that share a scale, as (axis label, metrics): ranking metrics on one axis, the
    catalogue's (coverage, mean popularity) on another, anything else on an axis of its own,
    so that no metric's scale flattens another's bars."""
    ranking = [m for m in metrics if m.split("@")[0] in RANKING_METRICS]
    catalogue = [m for m in metrics if m.split("@")[0] in CATALOGUE_METRICS]
    others = [m for m in metrics if m not in ranking and m not in catalogue]
    groups = [("ranking metric", ranking), ("share", catalogue), *((m, [m]) for m in others)]
    return [(label, group) for label, group in groups if group]


def bar_figure(title: str, rows: Mapping[str, Mapping[str, float]], metrics: list[str]):
    """Grouped bars, one subplot per metric group (`metric_groups`), one bar per method; the
    legend sits below the subplots, where it covers no bar. Returns the matplotlib figure."""
    plt = _pyplot()
    groups = metric_groups(metrics) or [("", [])]
    figure, axes = plt.subplots(
        1, len(groups), figsize=(2.0 + 1.4 * max(1, len(metrics)), 3.8), squeeze=False, layout="constrained",
        gridspec_kw={"width_ratios": [max(1, len(group)) for _, group in groups]},
    )
    width = 0.8 / max(1, len(rows))
    for ax, (label, group) in zip(axes[0], groups):
        for i, (name, row) in enumerate(rows.items()):
            values = [v if isinstance(v := row.get(m), (int, float)) else 0.0 for m in group]
            ax.bar([x + i * width for x in range(len(group))], values, width, label=name)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(group))], group)
        ax.set_ylabel(label)
    figure.suptitle(title)
    if rows:
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncol=min(len(rows), 5), fontsize="small")
    return figure


def bar_plot(title: str, rows: Mapping[str, Mapping[str, float]], metrics: list[str]) -> str:
    """`bar_figure` as base64 PNG."""
    return _rendered(bar_figure(title, rows, metrics))


def line_plot(title: str, series: Mapping[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str:
    """One line per series of (x, y) points, legend outside the axes; returns base64 PNG."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name, points in series.items():
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if series:
        figure.legend(loc="outside lower center", ncol=min(len(series), 5), fontsize="small")
    return _rendered(figure)


def points_figure(title: str, points: list[Mapping[str, Any]], xlabel: str, ylabel: str):
    """Points each annotated with its label (e.g. "nprobes 10, refine 5"): a trade-off curve
    whose settings can be read off the plot. A point's optional "group" picks its colour and
    legend entry. Returns the matplotlib figure."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5), layout="constrained")
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for point in points:
        groups.setdefault(point.get("group"), []).append(point)
    for group, members in groups.items():
        axes.scatter([p["x"] for p in members], [p["y"] for p in members], label=None if group is None else str(group), zorder=2)
    for i, p in enumerate(sorted(points, key=lambda p: (p["x"], p["y"]))):  # neighbours' labels alternate above and below
        axes.annotate(str(p.get("label", "")), (p["x"], p["y"]), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize="x-small")
    axes.margins(x=0.2, y=0.12)  # room for the labels of the outermost points
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    if any(group is not None for group in groups):
        figure.legend(loc="outside lower center", ncol=min(len(groups), 5), fontsize="small")
    return figure


def points_plot(title: str, points: list[Mapping[str, Any]], xlabel: str, ylabel: str) -> str:
    """`points_figure` as base64 PNG."""
    return _rendered(points_figure(title, points, xlabel, ylabel))


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def baseline_warnings(decision: Mapping[str, Any]) -> list[str]:
    """A line per baseline that beats the candidate on the headline metric, or comes within
    BASELINE_MARGIN (relative) of it: a candidate that barely beats popularity is not worth
    its complexity, whatever the gates say."""
    headline = decision.get("headline") or {}
    metric, mine = headline.get("metric", "the headline metric"), headline.get("candidate")
    if not _is_number(mine):
        return []
    warnings = []
    for name, theirs in sorted((decision.get("baselines") or {}).items()):
        if not _is_number(theirs):
            continue
        if theirs > mine:
            warnings.append(f"baseline {name} beats the candidate on {metric}: {theirs:.4f} against {mine:.4f}")
        elif theirs >= mine - BASELINE_MARGIN * abs(mine):
            warnings.append(f"baseline {name} is within {BASELINE_MARGIN:.0%} of the candidate on {metric}: {theirs:.4f} against {mine:.4f}")
    return warnings


def _headline_text(decision: Mapping[str, Any]) -> str:
    headline = decision.get("headline") or {}
    metric, mine, published = headline.get("metric", "?"), headline.get("candidate"), headline.get("published")
    if published is None:
        return f"{metric}: candidate {_number(mine)}; nothing published: baselines gate"
    change = f" ({mine - published:+.4f})" if _is_number(mine) and _is_number(published) else ""
    return f"{metric}: candidate {_number(mine)} against {_number(published)} for published release {_number(headline.get('published_release'))}{change}"


def decision_text(figures: Mapping[str, Any]) -> str:
    """The decision in a few console lines; empty without one."""
    decision = figures.get("decision")
    if not decision:
        return ""
    verdict = "PASSED" if decision.get("passed") else "FAILED"
    lines = [f"decision: {decision.get('kind', '')} candidate {decision.get('candidate')} {verdict}; {_headline_text(decision)}"]
    for gate in decision.get("gates") or []:
        result = {True: "pass", False: "FAIL"}.get(gate.get("passed"), "n/a")
        lines.append(f"  gate {gate.get('name')}: {result} (figure {_number(gate.get('figure'))}, threshold {_number(gate.get('threshold'))})")
    lines.extend(f"  WARNING: {warning}" for warning in baseline_warnings(decision))
    return "\n".join(lines)


def decision_section(figures: Mapping[str, Any]) -> str:
    """The report's first section: the candidate against the published release (or, with
    nothing published, the baselines), each gate with its threshold and figure, and a warning
    when a baseline comes close. Empty without a decision. Every string is escaped."""
    decision = figures.get("decision")
    if not decision:
        return ""
    e = html.escape
    passed = bool(decision.get("passed"))
    parts = [
        f"<section id='decision' class='{'passed' if passed else 'failed'}'>",
        f"<h2>Decision: {'PASSED' if passed else 'FAILED'}, {e(str(decision.get('kind', '')))} candidate "
        f"<code>{e(str(decision.get('candidate')))}</code></h2>",
        f"<p>{e(_headline_text(decision))}</p>",
    ]
    parts.extend(f"<p class='warning'>&#9888; Warning: {e(w)}</p>" for w in baseline_warnings(decision))
    gates = decision.get("gates") or []
    if gates:
        parts.append("<table><tr><th>gate</th><th>threshold</th><th>figure</th><th>result</th><th>why</th></tr>")
        for gate in gates:
            result = {True: "pass", False: "FAIL"}.get(gate.get("passed"), "n/a")
            parts.append(
                f"<tr class='{e(result.lower())}'><td>{e(str(gate.get('name')))}</td><td>{e(_number(gate.get('threshold')))}</td>"
                f"<td>{e(_number(gate.get('figure')))}</td><td>{e(result)}</td><td>{e(str(gate.get('text', '')))}</td></tr>"
            )
        parts.append("</table>")
    baselines = decision.get("baselines") or {}
    if baselines:
        headline = decision.get("headline") or {}
        mine = headline.get("candidate")
        cells = "".join(
            f"<tr><td>{e(str(name))}</td><td>{e(_number(value))}</td>"
            f"<td>{f'{(value - mine) / abs(mine):+.1%}' if _is_number(value) and _is_number(mine) and mine else 'n/a'}</td></tr>"
            for name, value in sorted(baselines.items(), key=lambda pair: -pair[1] if _is_number(pair[1]) else math.inf)
        )
        parts.append(f"<table><tr><th>baseline</th><th>{e(str(headline.get('metric', '')))}</th><th>against the candidate</th></tr>{cells}</table>")
    parts.append("</section>")
    return "\n".join(parts)


def run_section(figures: Mapping[str, Any]) -> str:
    """When, on what data, with which split and configuration the figures were made."""
    e = html.escape
    dataset = figures.get("dataset") or {}
    counts = ", ".join(f"{_number(dataset[k])} {k}" for k in ("events", "users", "items", "queries", "documents") if k in dataset)
    rows = [
        ("date", figures.get("date")),
        ("dataset", " ".join(p for p in (str(dataset.get("name", "")), counts) if p) or None),
        ("dataset sha256", dataset.get("sha256")),
        ("split", ", ".join(f"{k} {_number(v)}" for k, v in (figures.get("split") or {}).items()) or None),
    ]
    cells = "".join(f"<tr><th>{e(name)}</th><td>{e(str(value))}</td></tr>" for name, value in rows if value is not None)
    configuration = json.dumps(figures.get("configuration") or {}, indent=2, sort_keys=True, default=str)
    return f"<section id='run'><h2>Run</h2><table>{cells}</table><h3>Configuration</h3><pre>{e(configuration)}</pre></section>"


STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    "section.passed h2{color:#1a7f37}section.failed h2{color:#cf222e}tr.fail td{background:#ffebe9}"
    ".warning{background:#fff8c5;border:1px solid #d4a72c;padding:.5em}img{max-width:100%}"
)


def write(out: Path, report: Mapping[str, Any], sections: list[tuple[str, str, list[str]]]) -> tuple[Path, Path]:
    """Write `report.json` and `report.html` into `out`.

    `sections` are (heading, preformatted table text, base64 PNGs) for the page.
    """
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>recqa evaluation</title>",
        f"<style>{STYLE}</style>",
        "<h1>recqa evaluation</h1>",
    ]
    if report.get("decision"):  # the decision first, then what it was made on
        parts += [decision_section(report), run_section(report)]
    parts.append(f"<p>commit {html.escape(str(report.get('git_commit')))}; figures in <code>{html.escape(json_path.name)}</code></p>")
    for heading, table, images in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><pre>{html.escape(table)}</pre>")
        parts.extend(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{png}'>" for png in images)
    gates = report.get("gates") or {}
    if gates:
        verdict = "passed" if gates.get("passed") else "FAILED: " + "; ".join(gates.get("failures", []))
        parts.append(f"<h2>Gates</h2><p>{html.escape(verdict)}</p>")
    html_path.write_text("\n".join(parts))
    return json_path, html_path


def finish(out: Path, figures: dict[str, Any], sections: list[tuple[str, str, list[str]]], console: str) -> dict[str, Any]:
    """Write the report, print the decision, the console table and any gate failure; set the exit code.

    The exit code is 1 when a gate failed: one of `figures["gates"]["failures"]`, or a
    decision that did not pass.
    """
    json_path, html_path = write(out, figures, sections)
    if decision := decision_text(figures):
        print(decision)
    print(console)
    print(f"report: {json_path} and {html_path}")
    failures = list((figures.get("gates") or {}).get("failures", []))
    if figures.get("decision") and not figures["decision"].get("passed"):
        failures += [g.get("text") or str(g.get("name")) for g in figures["decision"].get("gates") or [] if g.get("passed") is False]
        failures = list(dict.fromkeys(failures)) or ["the decision did not pass"]
    if failures:
        print("gate FAILED: " + "; ".join(failures), file=sys.stderr)
    figures["exit_code"] = 1 if failures else 0
    return figures
