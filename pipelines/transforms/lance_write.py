"""Write a PCollection of rows as one new version of a Lance table.

Workers write fragments in parallel; a single commit step, which waits on the run's
checks, creates the version. A failure anywhere before the commit leaves no visible change.

Retried bundles. An engine (Flink, Spark, Dataflow) that loses a worker runs the bundle
again. The first attempt may already have written its fragment files, but a fragment is
only a file until the commit names it, and the commit names exactly the fragment
descriptions that reached `GatherFragments`: Beam delivers a bundle's outputs downstream
only when the bundle succeeds, so the failed attempt's descriptions never arrive and its
files stay unreferenced: no version names them, so no reader sees them (they cost bytes,
never rows; Lance's `cleanup_old_versions(delete_unverified=True)` deletes such files).
Nothing here trusts the engine for that alone: `checked_fragments` drops a description delivered twice (same data files) and then
refuses the commit unless the rows of the fragments equal the rows counted apart from them
(`CountRows`). A runner that let two attempts' outputs through would fail the run, visibly
and with nothing published, rather than commit duplicate rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
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


def _data_files(fragment: str) -> tuple[str, ...]:
    """The data files a fragment description names: what makes two descriptions the same fragment."""
    return tuple(sorted(file["path"] for file in json.loads(fragment)["files"]))


def checked_fragments(written: Sequence[tuple[pa.Schema, str]], rows: int, *, table: str) -> list[tuple[pa.Schema, str]]:
    """The fragments to commit: each once, and together exactly `rows` rows, or an error.

    `rows` is counted from the rows PCollection itself, apart from the writes, so rows written
    twice (two attempts of one bundle both delivered) cannot be committed unnoticed.
    """
    unique: dict[tuple[str, ...], tuple[pa.Schema, str]] = {}
    for schema, fragment in written:
        unique.setdefault(_data_files(fragment), (schema, fragment))
    fragments = list(unique.values())
    committed = sum(int(json.loads(fragment)["physical_rows"]) for _, fragment in fragments)
    if committed != rows:
        raise RuntimeError(
            f"refusing to commit '{table}': its {len(fragments)} fragments hold {committed} rows but the pipeline produced "
            f"{rows}; the runner delivered a retried bundle's writes twice or lost one. Nothing was committed: run the build again"
        )
    return fragments


class WriteTable(beam.PTransform):
    """rows -> fragments (in parallel) -> the checked list of (schema, fragment), ready for one commit."""

    def __init__(self, warehouse: str, table: str, schema_of: Callable[[dict[str, Any]], pa.Schema]) -> None:
        super().__init__()
        self._warehouse = warehouse
        self._table = table
        self._schema_of = schema_of

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        count = rows | "CountRows" >> beam.combiners.Count.Globally()
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=MIN_ROWS_PER_WRITE, max_batch_size=MAX_ROWS_PER_WRITE)
            | "WriteFragments" >> beam.ParDo(WriteFragmentsDoFn(self._warehouse, self._table, self._schema_of))
            | "GatherFragments" >> beam.combiners.ToList()
            | "CheckFragments" >> beam.Map(checked_fragments, beam.pvalue.AsSingleton(count), table=self._table)
        )
