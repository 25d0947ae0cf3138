"""Write a PCollection of rows as one new version of a Lance table.

Workers write fragments in parallel; a single commit step, which waits on the run's
checks, creates the version. A failure anywhere before the commit leaves no visible change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from pipelines import lance_io

# Rows per fragment write: big enough for few files, small enough to bound worker memory.
MIN_ROWS_PER_WRITE = 1_000
MAX_ROWS_PER_WRITE = 50_000


class WriteFragmentsDoFn(beam.DoFn):
    """A batch of row dicts -> (schema, JSON fragment description) of each fragment written."""

    def __init__(self, warehouse: str, table: str, schema_of: Callable[[dict[str, Any]], pa.Schema]) -> None:
        self._warehouse = warehouse
        self._table = table
        self._schema_of = schema_of

    def setup(self) -> None:
        self._written = beam.metrics.Metrics.counter(f"write-{self._table}", "written")
        self._msecs = beam.metrics.Metrics.counter(f"write-{self._table}", "msecs")

    def process(self, rows: list[dict[str, Any]]) -> Iterator[tuple[pa.Schema, str]]:
        started = time.perf_counter()
        schema = self._schema_of(rows[0])
        table = lance_io.to_arrow(rows, schema)
        for fragment in lance_io.write_fragments(self._warehouse, self._table, table):
            yield schema, fragment
        self._written.inc(len(rows))
        self._msecs.inc(int((time.perf_counter() - started) * 1000))


class WriteTable(beam.PTransform):
    """rows -> fragments (in parallel) -> the list of (schema, fragment), ready for one commit."""

    def __init__(self, warehouse: str, table: str, schema_of: Callable[[dict[str, Any]], pa.Schema]) -> None:
        super().__init__()
        self._warehouse = warehouse
        self._table = table
        self._schema_of = schema_of

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_ROWS_PER_WRITE, max_batch_size=MAX_ROWS_PER_WRITE)
            | "WriteFragments" >> beam.ParDo(WriteFragmentsDoFn(self._warehouse, self._table, self._schema_of))
            | "GatherFragments" >> beam.combiners.ToList()
        )
