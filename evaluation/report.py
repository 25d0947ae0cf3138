"""The evaluation report: one JSON file with every figure, an HTML page with plots, a console table.

The JSON carries what a reader needs to trust or reproduce a figure: dataset hash, table
versions, configuration, seed and git commit. Plots are PNGs embedded in the page, so the
HTML is one self-contained file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


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


def bar_plot(title: str, rows: Mapping[str, Mapping[str, float]], metrics: list[str]) -> str:
    """Grouped bars, one group per metric and one bar per method; returns base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(rows))
    for i, (name, row) in enumerate(rows.items()):
        axes.bar([m + i * width for m in range(len(metrics))], [row.get(m, 0.0) for m in metrics], width, label=name)
    axes.set_xticks([m + 0.4 - width / 2 for m in range(len(metrics))], metrics)
    axes.set_title(title)
    axes.legend(fontsize="small")
    png = _png(figure)
    plt.close(figure)
    return png


def line_plot(title: str, series: Mapping[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str:
    """One line per series of (x, y) points; returns base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    for name, points in series.items():
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.legend(fontsize="small")
    png = _png(figure)
    plt.close(figure)
    return png


def write(out: Path, report: Mapping[str, Any], sections: list[tuple[str, str, list[str]]]) -> tuple[Path, Path]:
    """Write `report.json` and `report.html` into `out`.

    `sections` are (heading, preformatted table text, base64 PNGs) for the page.
    """
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>recqa evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:1em}</style>",
        "<h1>recqa evaluation</h1>",
        f"<p>commit {html.escape(str(report.get('git_commit')))}; figures in <code>{json_path.name}</code></p>",
    ]
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
    """Write the report, print the console table and any gate failure; set the exit code."""
    json_path, html_path = write(out, figures, sections)
    print(console)
    print(f"report: {json_path} and {html_path}")
    failures = figures["gates"]["failures"]
    if failures:
        print("gate FAILED: " + "; ".join(failures), file=sys.stderr)
    figures["exit_code"] = 1 if failures else 0
    return figures
