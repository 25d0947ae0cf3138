"""The end-of-run summary: per stage, rows read, rejected, deduplicated, written, and seconds."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

COLUMNS = ("read", "rejected", "duplicates", "written")
INPUT_STAGES = ("interactions", "items", "documents")


@dataclass(frozen=True)
class StageRow:
    stage: str
    counts: dict[str, int]
    seconds: float


def stage_rows(result) -> list[StageRow]:
    """Stage rows from a finished Beam run's counters (namespace = stage)."""
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for counter in result.metrics().query()["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[counter.key.metric.namespace][name] = totals[counter.key.metric.namespace].get(name, 0) + int(value or 0)
    rows = []
    for stage, values in totals.items():
        msecs = sum(v for k, v in values.items() if k.endswith("msecs"))
        counts = {k: v for k, v in values.items() if k in COLUMNS}
        if "read" in counts and stage in INPUT_STAGES:
            counts.setdefault("rejected", 0)  # Beam reports no counter that was never incremented
        if "unique" in values:
            counts["duplicates"] = counts.get("read", 0) - counts.get("rejected", 0) - values["unique"]
        if counts or msecs:
            rows.append(StageRow(stage, counts, msecs / 1000.0))
    return sorted(rows, key=lambda r: r.stage)


def format_table(rows: list[StageRow]) -> str:
    """A fixed-width table; '-' where a stage has no such count."""
    header = f"  {'stage':<16}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'seconds':>10}"
    lines = [header]
    for row in rows:
        cells = "".join(f"{row.counts[c]:>12,}" if c in row.counts else f"{'-':>12}" for c in COLUMNS)
        lines.append(f"  {row.stage:<16}{cells}{row.seconds:>10.1f}")
    return "\n".join(lines)
