"""The end-of-run summary: per stage, rows read, rejected, deduplicated, written, and seconds.

Stages are listed in pipeline order (inputs read, ALS fitted, texts encoded, tables written),
and a closing line says where the rejected rows went, or that there were none.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

COLUMNS = ("read", "rejected", "duplicates", "written")
INPUT_STAGES = ("interactions", "items", "documents")
# the order a run goes through its stages: a stage is placed by the first of these its name starts with
PIPELINE_ORDER = (*INPUT_STAGES, "als", "encode-", "write-")
REJECTS_FILE = "rejects_file"  # the string-set metric, per input stage, naming its written rejects file


@dataclass(frozen=True)
class StageRow:
    stage: str
    counts: dict[str, int]
    seconds: float
    rejects_file: str | None = None  # input stages that rejected rows: where they were written


def _position(stage: str) -> tuple[int, str]:
    rank = next((i for i, prefix in enumerate(PIPELINE_ORDER) if stage == prefix or (prefix.endswith("-") and stage.startswith(prefix))),
                len(PIPELINE_ORDER) - 1)  # an unknown stage goes before the writes
    return rank, stage


def stage_rows(result) -> list[StageRow]:
    """Stage rows from a finished Beam run's counters (namespace = stage), in pipeline order."""
    metrics = result.metrics().query()
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for counter in metrics["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[counter.key.metric.namespace][name] = totals[counter.key.metric.namespace].get(name, 0) + int(value or 0)
    files: dict[str, str] = {}
    for string_set in metrics.get("string_sets", []):
        if string_set.key.metric.name == REJECTS_FILE:
            values = string_set.committed or string_set.attempted or set()
            files.update({string_set.key.metric.namespace: sorted(values)[0]} if values else {})
    rows = []
    for stage, values in totals.items():
        msecs = sum(v for k, v in values.items() if k.endswith("msecs"))
        counts = {k: v for k, v in values.items() if k in COLUMNS}
        if "read" in counts and stage in INPUT_STAGES:
            counts.setdefault("rejected", 0)  # Beam reports no counter that was never incremented
        if "unique" in values:  # deduplicated after the change log dropped (`replaced`) and added (`logged`) rows
            counts["duplicates"] = (counts.get("read", 0) - counts.get("rejected", 0) - values.get("replaced", 0)
                                    + values.get("logged", 0) - values["unique"])
        if counts or msecs:
            rows.append(StageRow(stage, counts, msecs / 1000.0, files.get(stage)))
    return sorted(rows, key=lambda r: _position(r.stage))


def rejects_line(rows: list[StageRow]) -> str:
    """'no rejects', or per input the rejected rows and the file they are in."""
    rejected = [row for row in rows if row.stage in INPUT_STAGES and row.counts.get("rejected")]
    if not rejected:
        return "no rejects"
    parts = [f"{row.counts['rejected']:,} {row.stage} row{'s' if row.counts['rejected'] != 1 else ''} in {row.rejects_file or '(not written)'}"
             for row in rejected]
    return "rejects: " + "; ".join(parts)


def format_table(rows: list[StageRow]) -> str:
    """A fixed-width table in pipeline order; '-' where a stage has no such count; then where the rejects went."""
    rows = sorted(rows, key=lambda r: _position(r.stage))
    header = f"  {'stage':<16}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'seconds':>10}"
    lines = [header]
    for row in rows:
        cells = "".join(f"{row.counts[c]:>12,}" if c in row.counts else f"{'-':>12}" for c in COLUMNS)
        lines.append(f"  {row.stage:<16}{cells}{row.seconds:>10.1f}")
    if any(row.stage in INPUT_STAGES for row in rows):
        lines.append(f"  {rejects_line(rows)}")
    return "\n".join(lines)
