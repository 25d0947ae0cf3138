"""The only module that writes Lance: fragments, one commit per table, indexes, the publish tag.

Writes follow the pattern Lance documents for distributed writes: workers write fragments in
parallel (invisible to readers), then one commit per table creates the new version. A run
that dies before its commit leaves the table exactly as it was. Readers follow the
`published` tag, which only `publish` moves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from features.schemas import ANSWER_TEXT_COLUMN, PUBLISHED_TAG, IndexConfig, table_uri

RELEASE_TAG_PREFIX = "release-"  # one per publish, so rollback can walk back


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


def dataset(warehouse: str, name: str, version: int | str | None = None):
    """The Lance dataset of a table (latest version unless one is named), or None if absent."""
    import lance

    try:
        return lance.dataset(table_uri(warehouse, name), version=version)
    except (FileNotFoundError, ValueError, OSError):
        return None


def write_fragments(warehouse: str, name: str, table: pa.Table) -> list[str]:
    """Write rows as fragments of the table's dataset; returns them as JSON for the commit.

    Nothing is visible to readers until `commit_table` names these fragments.
    """
    from lance.fragment import write_fragments as lance_write_fragments

    if "://" not in warehouse:
        os.makedirs(warehouse, exist_ok=True)
    fragments = lance_write_fragments(table, table_uri(warehouse, name), schema=table.schema)
    return [json.dumps(fragment.to_json()) for fragment in fragments]


def commit_fragments(
    warehouse: str, name: str, written: Sequence[tuple[pa.Schema, str]], metadata: Mapping[bytes, bytes] | None = None
) -> int:
    """Commit what WriteFragmentsDoFn wrote: (schema, fragment) pairs, one schema for all."""
    if not written:
        raise ValueError(f"refusing to commit an empty '{name}' table: the input produced no rows")
    schemas = {schema for schema, _ in written}
    if len(schemas) != 1:
        raise ValueError(f"fragments of '{name}' disagree on the schema: {schemas}")
    return commit_table(warehouse, name, written[0][0], [fragment for _, fragment in written], metadata)


def commit_table(
    warehouse: str, name: str, schema: pa.Schema, fragments: Sequence[str], metadata: Mapping[bytes, bytes] | None = None
) -> int:
    """One commit that replaces the table's rows with `fragments`: the run's new version."""
    import lance
    from lance.fragment import FragmentMetadata

    if not fragments:
        raise ValueError(f"refusing to commit an empty '{name}' table: the input produced no rows")
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    current = dataset(warehouse, name)
    operation = lance.LanceOperation.Overwrite(schema, [FragmentMetadata.from_json(f) for f in fragments])
    committed = lance.LanceDataset.commit(
        table_uri(warehouse, name), operation, read_version=current.version if current is not None else None
    )
    return int(committed.version)


def write_table(warehouse: str, name: str, table: pa.Table, metadata: Mapping[bytes, bytes] | None = None) -> int:
    """Fragments + commit in one call, for tables small enough to build in one place."""
    if table.num_rows == 0:
        raise ValueError(f"refusing to write an empty '{name}' table: the input produced no rows")
    return commit_table(warehouse, name, table.schema, write_fragments(warehouse, name, table), metadata)


def ivf_pq_parameters(rows: int, dimension: int) -> dict[str, int]:
    """IVF-PQ sizes from the table's shape: ~sqrt(rows) partitions, 8-dim PQ sub-vectors.

    Sub-vectors must divide the dimension; 8 dims each keeps the code small and recall high
    after refine.
    """
    partitions = max(1, min(4096, int(round(math.sqrt(rows)))))
    sub_vectors = next(d for d in (dimension // 8, dimension // 4, dimension // 2, dimension, 1) if d and dimension % d == 0)
    return {"num_partitions": partitions, "num_sub_vectors": sub_vectors}


def create_vector_indexes(warehouse: str, name: str, configs: Sequence[IndexConfig]) -> list[str]:
    """IVF-PQ on each vector column of a table with at least `min_rows_for_ann` rows.

    Smaller tables are searched exactly, which is both faster and exact at that size.
    """
    import lancedb
    from lancedb.index import IvfPq

    table = lancedb.connect(warehouse).open_table(name)
    rows = table.count_rows()
    built = []
    for config in configs:
        if rows < config.min_rows_for_ann:
            continue
        dimension = table.schema.field(config.column).type.list_size
        parameters = ivf_pq_parameters(rows, dimension)
        table.create_index(
            config.column,
            config=IvfPq(distance_type=config.distance_type, max_iterations=config.kmeans_iterations, **parameters),
            replace=True,
        )
        built.append(config.column)
    return built


def create_fts_index(warehouse: str, name: str, column: str = ANSWER_TEXT_COLUMN) -> int:
    """Build the full-text (BM25) index on `column`; returns the table version after it."""
    import lancedb
    from lancedb.index import FTS

    table = lancedb.connect(warehouse).open_table(name)
    table.create_index(column, config=FTS(), replace=True)
    return int(table.version)


def table_versions(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The latest version of each named table."""
    return {name: int(dataset(warehouse, name).version) for name in names}


def table_rows(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The row count of the latest version of each named table."""
    return {name: int(dataset(warehouse, name).count_rows()) for name in names}


def _release_tags(ds) -> list[tuple[int, str, int]]:
    """(sequence, tag, version) of every release tag, oldest first."""
    releases = []
    for tag, info in ds.tags.list().items():
        if tag.startswith(RELEASE_TAG_PREFIX):
            releases.append((int(tag[len(RELEASE_TAG_PREFIX) :]), tag, int(info["version"])))
    return sorted(releases)


def published_version(warehouse: str, name: str) -> int | None:
    """The version the `published` tag points at, or None before the first publish."""
    ds = dataset(warehouse, name)
    if ds is None or PUBLISHED_TAG not in ds.tags.list():
        return None
    return int(ds.tags.get_version(PUBLISHED_TAG))


def publish_table(warehouse: str, name: str, version: int | None = None) -> int:
    """Point `published` (and a new release tag) at `version`, the latest by default."""
    ds = dataset(warehouse, name)
    if ds is None:
        raise FileNotFoundError(f"table '{name}' does not exist in '{warehouse}'")
    version = int(ds.version if version is None else version)
    releases = _release_tags(ds)
    sequence = releases[-1][0] + 1 if releases else 1
    ds.tags.create(f"{RELEASE_TAG_PREFIX}{sequence:06d}", version)
    if PUBLISHED_TAG in ds.tags.list():
        ds.tags.update(PUBLISHED_TAG, version)
    else:
        ds.tags.create(PUBLISHED_TAG, version)
    return version


def rollback_table(warehouse: str, name: str) -> int:
    """Move `published` back to the release before the current one; returns that version."""
    ds = dataset(warehouse, name)
    releases = _release_tags(ds) if ds is not None else []
    if len(releases) < 2:
        raise ValueError(f"table '{name}' has no earlier release to roll back to")
    _, current_tag, _ = releases[-1]
    _, _, previous_version = releases[-2]
    ds.tags.update(PUBLISHED_TAG, previous_version)
    ds.tags.delete(current_tag)  # the next rollback goes one further back
    return previous_version


def cleanup_table(warehouse: str, name: str, retain_releases: int) -> int:
    """Keep the last `retain_releases` releases (and the published one); delete older versions.

    Returns how many versions were removed. Versions newer than the published one (a run
    not yet published) are kept.
    """
    ds = dataset(warehouse, name)
    if ds is None:
        return 0
    releases = _release_tags(ds)
    for _, tag, _ in releases[: max(0, len(releases) - retain_releases)]:
        ds.tags.delete(tag)
    kept = {version for _, _, version in releases[-retain_releases:]} if retain_releases else set()
    published = published_version(warehouse, name)
    oldest_kept = min(kept | ({published} if published else set()) | {int(ds.version)})
    doomed = [v["version"] for v in ds.versions() if v["version"] < oldest_kept and v["version"] not in kept]
    if not doomed:
        return 0
    ds.cleanup_old_versions(versions=doomed, error_if_tagged_old_versions=False)
    return len(doomed)
