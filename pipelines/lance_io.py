"""The only module that writes Lance: versioned table writes and indexes.

Each write is a new version of the table's dataset (`mode="overwrite"` keeps history),
so a reader pinned to an older version is never disturbed by a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from features.schemas import ANSWER_TEXT_COLUMN


def table_uri(warehouse: str, name: str) -> str:
    """Where LanceDB keeps table `name` of a warehouse: `<warehouse>/<name>.lance`."""
    return f"{warehouse.rstrip('/')}/{name}.lance"


def to_arrow(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to an Arrow table of exactly `schema`; a missing column is an error."""
    rows = list(rows)
    columns = {}
    for field in schema:
        try:
            columns[field.name] = pa.array([row[field.name] for row in rows], type=field.type)
        except KeyError:
            raise KeyError(f"row is missing column '{field.name}' of the table schema") from None
    return pa.Table.from_pydict(columns, schema=schema)


def write_table(
    warehouse: str, name: str, table: pa.Table, metadata: Mapping[bytes, bytes] | None = None
) -> int:
    """Write `table` as a new version of `<warehouse>/<name>.lance`; returns the version."""
    import lance

    if table.num_rows == 0:
        raise ValueError(f"refusing to write an empty '{name}' table: the input produced no rows")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    if "://" not in warehouse:
        os.makedirs(warehouse, exist_ok=True)
    uri = table_uri(warehouse, name)
    mode = "overwrite" if _exists(uri) else "create"
    dataset = lance.write_dataset(table, uri, mode=mode)
    return int(dataset.version)


def create_fts_index(warehouse: str, name: str, column: str = ANSWER_TEXT_COLUMN) -> int:
    """Build the full-text (BM25) index on `column`; returns the table version after it."""
    import lancedb
    from lancedb.index import FTS

    table = lancedb.connect(warehouse).open_table(name)
    table.create_index(column, config=FTS(), replace=True)
    return int(table.version)


def table_versions(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The latest version of each named table."""
    import lance

    return {name: int(lance.dataset(table_uri(warehouse, name)).version) for name in names}


def table_rows(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The row count of the latest version of each named table."""
    import lance

    return {name: int(lance.dataset(table_uri(warehouse, name)).count_rows()) for name in names}


def _exists(uri: str) -> bool:
    import lance

    try:
        lance.dataset(uri)
    except (FileNotFoundError, ValueError, OSError):
        return False
    return True
