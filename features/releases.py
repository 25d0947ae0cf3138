"""The release log: which version of every table is published, as one record.

A release names a version of every published table at once, so a reader that takes the
log's last release sees one consistent set, never users of one run with items of another.
The log is a small Lance table (`releases`) that `publish` rewrites with a compare-and-swap
commit; the writer (pipelines/lance_io.py) and the reader (serving/reload.py) share this
schema and its conversions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

RELEASES_TABLE = "releases"
RELEASES_SCHEMA = pa.schema(
    [
        pa.field("release", pa.int64(), nullable=False),  # 1, 2, 3, ...; after a rollback the dropped number is used again
        pa.field("action", pa.string(), nullable=False),  # "publish", "purge" (users forgotten), or "tagged" for a pre-log warehouse's tags
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("tables", pa.string(), nullable=False),  # JSON {table: version}
        # JSON {kind: candidate id} of the candidates released (empty for a pre-candidate release)
        pa.field("candidates", pa.string(), nullable=True),
        pa.field("forced", pa.string(), nullable=True),  # JSON [kind]: served with --force, without a passed evaluation
        pa.field("reports", pa.string(), nullable=True),  # JSON {kind: sha256 of the report that judged it}
    ]
)


@dataclass(frozen=True)
class Release:
    """One published set: the version of each table, and when and how it was made."""

    number: int
    tables: dict[str, int] = field(default_factory=dict)
    action: str = "publish"
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    candidates: dict[str, str] = field(default_factory=dict)  # kind -> the candidate whose tables these are
    forced: list[str] = field(default_factory=list)  # kinds served with --force, without a passed evaluation
    reports: dict[str, str] = field(default_factory=dict)  # kind -> sha256 of the evaluation report


def releases_to_arrow(releases: list[Release]) -> pa.Table:
    """The log's rows, oldest release first."""
    return pa.Table.from_pylist(
        [
            {"release": r.number, "action": r.action, "created_at": r.created_at, "tables": json.dumps(r.tables, sort_keys=True),
             "candidates": json.dumps(r.candidates, sort_keys=True), "forced": json.dumps(sorted(r.forced)), "reports": json.dumps(r.reports, sort_keys=True)}
            for r in releases
        ],
        schema=RELEASES_SCHEMA,
    )


def releases_from_arrow(table: pa.Table) -> list[Release]:
    """Releases in log order (the last one is what is published)."""
    rows = table.to_pylist()
    releases = [  # a log written before candidates lacks their columns
        Release(int(row["release"]), {k: int(v) for k, v in json.loads(row["tables"]).items()}, row["action"], row["created_at"],
                json.loads(row.get("candidates") or "{}"), json.loads(row.get("forced") or "[]"), json.loads(row.get("reports") or "{}"))
        for row in rows
    ]
    return sorted(releases, key=lambda r: r.number)


def tagged_release(tags: Mapping[str, int]) -> Release | None:
    """The `published` tags of a warehouse that predates the log, as its release (None: no tags)."""
    unknown = datetime.fromtimestamp(0, timezone.utc)  # tags do not say when they were moved
    return Release(number=0, tables=dict(tags), action="tagged", created_at=unknown) if tags else None
