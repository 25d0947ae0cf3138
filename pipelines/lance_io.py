"""The only module that writes Lance: fragments, one commit per table, indexes, the release log.

Writes follow the pattern Lance documents for distributed writes: workers write fragments in
parallel (invisible to readers), then one commit per table creates the new version. A run
that dies before its commit leaves the table exactly as it was. Readers follow the release
log (features/releases.py), which only `publish` and `rollback` change, each with one
compare-and-swap commit, so every table of a release becomes visible at the same moment.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from features.candidates import CANDIDATES_TABLE
from features.ivf import ivf_pq_parameters
from features.releases import RELEASES_TABLE, Release, releases_to_arrow
from features.schemas import ANSWER_FTS, ANSWER_TEXT_COLUMN, PUBLISHED_TAG, FTSConfig, IndexConfig, table_uri
from registry.log import ReleaseLog, read_releases

logger = logging.getLogger(__name__)
SNAPSHOT_TAG_PREFIX = "snapshot-"  # on the change log: the version a candidate's build applied
LEGACY_RELEASE_TAG_PREFIX = "release-"  # tags an older recqa kept per publish, before the log


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


def published_metadata(warehouse: str, name: str, versions: Mapping[str, int] | None) -> dict[bytes, bytes] | None:
    """The schema metadata of a table at the version `versions` (the published release's) names;
    None when it names none: what a writer of the change log embeds for (model, chunking)."""
    version = (versions or {}).get(name)
    ds = dataset(warehouse, name, version) if version is not None else None
    return None if ds is None else dict(ds.schema.metadata or {})


def write_fragments(warehouse: str, name: str, table: pa.Table) -> list[str]:
    """Write rows as fragments of the table's dataset; returns them as JSON for the commit.

    Nothing is visible to readers until `commit_table` names these fragments.
    """
    from lance.fragment import write_fragments as lance_write_fragments

    if "://" not in warehouse:
        os.makedirs(warehouse, exist_ok=True)
    # "overwrite": the commit replaces the table, so a new schema (other factor counts, another
    # encoder dimension) is allowed; "append" would check the fragments against the old one
    fragments = lance_write_fragments(table, table_uri(warehouse, name), schema=table.schema, mode="overwrite")
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


def _open_own(warehouse: str, name: str, candidate: str | None):
    """The table's latest version, which must be the one `candidate`'s build committed.

    Indexes are built on the latest version: if another build of the same table committed in
    between, this build's index would land on that build's rows. Refusing leaves this build
    without a candidate (nothing of it is published) and says to run it again.
    """
    import lancedb

    from features.schemas import META_CANDIDATE

    table = lancedb.connect(warehouse).open_table(name)
    owner = (table.schema.metadata or {}).get(META_CANDIDATE)
    if candidate is not None and owner != candidate.encode():
        raise RuntimeError(f"another build of '{name}' ({owner.decode() if owner else 'unknown'}) committed after {candidate}; "
                           "run this build again once it has finished")
    return table


def create_vector_indexes(warehouse: str, name: str, configs: Sequence[IndexConfig], candidate: str | None = None) -> list[str]:
    """IVF-PQ on each vector column of a table with at least `min_rows_for_ann` rows.

    Smaller tables are searched exactly, which is both faster and exact at that size.
    """
    from lancedb.index import IvfPq

    table = _open_own(warehouse, name, candidate)
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


def create_fts_index(
    warehouse: str, name: str, column: str = ANSWER_TEXT_COLUMN, config: FTSConfig = ANSWER_FTS, candidate: str | None = None
) -> int:
    """Build (or rebuild) the full-text (BM25) index on `column` with `config`'s tokenizer; returns the table version after it."""
    from lancedb.index import FTS

    table = _open_own(warehouse, name, candidate)
    fts = FTS(stem=config.stem, remove_stop_words=config.remove_stop_words, language=config.language)
    table.create_index(column, config=fts, replace=True)
    return int(table.version)


def table_versions(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The latest version of each named table."""
    return {name: int(dataset(warehouse, name).version) for name in names}


def table_rows(warehouse: str, names: Sequence[str]) -> dict[str, int]:
    """The row count of the latest version of each named table."""
    return {name: int(dataset(warehouse, name).count_rows()) for name in names}


class ReleaseConflict(RuntimeError):
    """Another publish or rollback changed the release log after this one read it."""


def _commit_releases(warehouse: str, log: ReleaseLog, releases: Sequence[Release]) -> int:
    """Replace the log with `releases`, only if nobody changed it since `log` was read.

    The commit is Lance's own compare-and-swap: an Overwrite whose read version is not the
    latest fails (CommitConflictError), so of two racing publishes exactly one lands.
    """
    import lance
    from lance.commit import CommitConflictError
    from lance.fragment import write_fragments as lance_write_fragments

    uri = table_uri(warehouse, RELEASES_TABLE)
    read_version = log.version
    if read_version is None:  # the first publish: create the log as it was read, then compare against it
        if "://" not in warehouse:
            os.makedirs(warehouse, exist_ok=True)
        try:
            read_version = int(lance.write_dataset(releases_to_arrow(list(log.releases)), uri, mode="create").version)
        except OSError as error:  # anything but losing the race to create it is a real failure
            if not any(word in str(error).lower() for word in ("already exists", "conflict")):
                raise
            raise ReleaseConflict(f"another publish created the release log first ({error})") from error
    table = releases_to_arrow(list(releases))
    operation = lance.LanceOperation.Overwrite(table.schema, lance_write_fragments(table, uri, schema=table.schema, mode="overwrite"))
    try:
        return int(lance.LanceDataset.commit(uri, operation, read_version=read_version).version)
    except CommitConflictError as error:
        raise ReleaseConflict(f"another publish or rollback changed the release log (read at version {read_version})") from error


def _mirror_published_tags(warehouse: str, release: Release) -> None:
    """Point each table's `published` tag at its version in `release`.

    A convenience for tools that open a table by tag; recqa itself reads the release log.
    The tags are moved after the log's commit, one table at a time, so a crash in between
    leaves a tag behind until the next publish or rollback.
    """
    for name, version in release.tables.items():
        ds = dataset(warehouse, name)
        if ds is None:
            continue
        try:
            if PUBLISHED_TAG in ds.tags.list():
                ds.tags.update(PUBLISHED_TAG, version)
            else:
                ds.tags.create(PUBLISHED_TAG, version)
        except Exception as error:  # noqa: BLE001 - the release has landed; a stale tag must not fail it
            logger.warning("released, but the '%s' tag of %s still names an older version: %s", PUBLISHED_TAG, name, error)


def publish_release(
    warehouse: str,
    log: ReleaseLog,
    versions: Mapping[str, int],
    retain_releases: int,
    candidates: Mapping[str, str] | None = None,
    forced: Sequence[str] = (),
    reports: Mapping[str, str] | None = None,
    action: str = "publish",
) -> Release:
    """Append a release of `versions` (other tables keep their published version) in one commit.

    `candidates` ({kind: id}), `reports` ({kind: sha256, "" when never evaluated}) and `forced`
    (the kinds released with --force) describe the kinds released; the other kinds keep the
    current release's. Raises ReleaseConflict if the log
    moved since `log` was read; nothing changes then. Releases beyond the last
    `retain_releases` leave the log.
    """
    current = log.current
    release = Release(
        number=current.number + 1 if current is not None else 1,
        tables={**(current.tables if current is not None else {}), **{k: int(v) for k, v in versions.items()}},
        action=action,
        candidates={**(current.candidates if current is not None else {}), **dict(candidates or {})},
        forced=sorted((set(current.forced if current is not None else ()) - set(candidates or {})) | set(forced)),
        reports={**(current.reports if current is not None else {}), **dict(reports or {})},
    )
    _commit_releases(warehouse, log, [*log.releases, release][-max(1, retain_releases) :])
    _mirror_published_tags(warehouse, release)
    return release


def rollback_release(warehouse: str, log: ReleaseLog | None = None) -> Release:
    """Drop the current release from the log, so the one before it is published again.

    `log`: the log as the caller read (and checked) it; the commit fails if it moved since.
    """
    log = log if log is not None else read_releases(warehouse)
    if len(log.releases) < 2:
        raise ValueError(f"no earlier release to roll back to in '{warehouse}' ({len(log.releases)} in the log)")
    previous = log.releases[-2]
    _commit_releases(warehouse, log, log.releases[:-1])
    _mirror_published_tags(warehouse, previous)
    return previous


def cleanup_table(warehouse: str, name: str, releases: Sequence[Release]) -> int:
    """Delete versions of `name` that none of `releases` (the log) names and that predate them all.

    Returns how many versions were removed. Versions newer than the oldest release kept (a run
    not yet published, or a release rolled back) are kept.
    """
    ds = dataset(warehouse, name)
    kept = {release.tables[name] for release in releases if name in release.tables}
    if ds is None or not kept:
        return 0
    for tag in [tag for tag in ds.tags.list() if tag.startswith(LEGACY_RELEASE_TAG_PREFIX)]:
        ds.tags.delete(tag)  # an older recqa's rollback tags; the log holds the releases now
    oldest_kept = min(kept)
    doomed = [v["version"] for v in ds.versions() if v["version"] < oldest_kept]
    if not doomed:
        return 0
    ds.cleanup_old_versions(versions=doomed, error_if_tagged_old_versions=False)
    return len(doomed)


def ensure_candidates_table(warehouse: str) -> None:
    """Create the (empty) candidates table if it does not exist yet (builds call it when they start)."""
    from features.candidates import rows_to_arrow

    _ensure_table(warehouse, CANDIDATES_TABLE, rows_to_arrow([]))


def ensure_changes_table(warehouse: str, attempts: int = 5) -> None:
    """Create the (empty) change log if it does not exist yet (the writers call it when they
    start), and give a log made before vectors were kept their columns, null in its old rows."""
    import time

    from features.changes import CHANGES_SCHEMA, CHANGES_TABLE, VECTOR_COLUMNS, rows_to_arrow

    ds = _ensure_table(warehouse, CHANGES_TABLE, rows_to_arrow([]))
    for attempt in range(attempts):
        missing = [CHANGES_SCHEMA.field(name) for name in VECTOR_COLUMNS if name not in ds.schema.names]
        if not missing:
            return
        try:  # metadata only: the old rows read the new columns as null
            ds.add_columns(pa.schema(missing))
        except OSError as error:  # another writer added them first, or an append landed meanwhile: look again
            if attempt == attempts - 1:
                raise RuntimeError(f"could not add the columns {[f.name for f in missing]} to the change log: {error}") from error
            time.sleep(0.05 * (attempt + 1))
        ds = dataset(warehouse, CHANGES_TABLE)


def _ensure_table(warehouse: str, name: str, empty: pa.Table):
    """Create an empty append-only table if it does not exist yet; returns its dataset.

    Lance's create is not a compare-and-swap: two creates at once can both land, the second as
    an overwrite. Writers therefore call this when they start, long before they append: racing
    creates then only replace one empty table with another, and no append meets a create.
    """
    import lance

    if (existing := dataset(warehouse, name)) is not None:
        return existing
    if "://" not in warehouse:
        os.makedirs(warehouse, exist_ok=True)
    try:
        return lance.write_dataset(empty, table_uri(warehouse, name), schema=empty.schema, mode="create")
    except OSError as error:
        if not any(word in str(error).lower() for word in ("already exists", "conflict", "incompatible")):
            raise
    return dataset(warehouse, name)  # another writer created it first


def append_candidate_events(warehouse: str, rows: Sequence[Mapping[str, Any]], attempts: int = 5) -> int:
    """Append events to the candidates table; returns the version that holds them.

    Appends commit without conflict against each other, so build-recs and build-qa running
    side by side both record their candidates.
    """
    from features.candidates import rows_to_arrow

    ensure_candidates_table(warehouse)
    keys = {(row["candidate"], row["event"], row["record"]) for row in rows}

    def landed(ds) -> bool:
        written = ds.to_table(columns=["candidate", "event", "record"]).to_pylist()
        return keys <= {(r["candidate"], r["event"], r["record"]) for r in written}

    return _append(warehouse, CANDIDATES_TABLE, rows_to_arrow(rows), landed, attempts)


def append_changes(warehouse: str, changes: Sequence[Any], attempts: int = 5) -> int:
    """Append acknowledged writes to the change log as one commit; returns the version holding them.

    Only when this returns is a write acknowledged: the rows are committed and read back. A
    writer killed before the commit leaves nothing visible (Lance commits a version whole).
    """
    import secrets
    from datetime import datetime, timezone

    from features.changes import CHANGES_TABLE, change_rows, rows_to_arrow

    ensure_changes_table(warehouse)
    batch = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"
    rows = change_rows(changes, datetime.now(timezone.utc), batch)

    def landed(ds) -> bool:
        return ds.count_rows(filter=f"batch = '{batch}'") == len(rows)  # the id is digits, T, - and hex

    return _append(warehouse, CHANGES_TABLE, rows_to_arrow(rows), landed, attempts)


def tag_changes_snapshot(warehouse: str, version: int, candidate: str) -> None:
    """Tag the change log version a build applied, so compaction keeps it readable: evaluation
    applies exactly that snapshot, and the service overlays what came after it."""
    from features.changes import CHANGES_TABLE

    ds = dataset(warehouse, CHANGES_TABLE)
    if ds is not None and version:
        ds.tags.create(SNAPSHOT_TAG_PREFIX + candidate, version)


def release_snapshot_tags(warehouse: str, keep: set[str]) -> int:
    """Drop the snapshot tags of candidates not in `keep` (those still served, retained or not
    yet judged); returns how many went. Their versions then go at the next compaction."""
    from features.changes import CHANGES_TABLE

    ds = dataset(warehouse, CHANGES_TABLE)
    if ds is None:
        return 0
    doomed = [tag for tag in ds.tags.list() if tag.startswith(SNAPSHOT_TAG_PREFIX) and tag[len(SNAPSHOT_TAG_PREFIX):] not in keep]
    for tag in doomed:
        ds.tags.delete(tag)
    return len(doomed)


# Change log versions younger than this stay at a compaction. At 50 writes/s the writer commits
# about 2.3 times a second (benchmarks/RESULTS.md, "Freshness, eighth run"), so an hour kept
# about 8,000 versions and the data files they name; ten minutes keep about 1,400, and still
# outlast any append (seconds) and the service's follower, which reopens the log every step.
CHANGES_KEEP_SECONDS = 600.0
# A compaction merges the change log's fragments smaller than this and leaves the rest as they
# are. Lance's default target (a million rows) made every compaction rewrite the whole log,
# a cost that grew with every write kept (benchmarks/RESULTS.md, "Freshness, ninth run"). Now a
# compaction rewrites the rows of the one fragment still under this size plus those written
# since the last (each row until its fragment fills), and the log holds about a fragment per
# this many rows (Lance folds a remainder into the last, so one may exceed it).
CHANGES_FRAGMENT_ROWS = 10_000


def compact_changes(warehouse: str, keep_seconds: float = CHANGES_KEEP_SECONDS) -> dict[str, int]:
    """Merge the change log's small fragments (one per commit) into fragments of about
    CHANGES_FRAGMENT_ROWS rows, leaving full ones untouched, and remove its versions older than
    `keep_seconds`, except the snapshots builds tagged: fragments and versions stay bounded
    however many writes arrive, and a compaction's work by the rows written since the last one.
    The age limit keeps cleanup off the files of a concurrent append that no version names yet."""
    from datetime import timedelta

    from features.changes import CHANGES_TABLE

    ds = dataset(warehouse, CHANGES_TABLE)
    if ds is None:
        return {"fragments": 0, "versions_removed": 0}
    ds.optimize.compact_files(target_rows_per_fragment=CHANGES_FRAGMENT_ROWS)
    ds = dataset(warehouse, CHANGES_TABLE)
    stats = ds.cleanup_old_versions(older_than=timedelta(seconds=keep_seconds), error_if_tagged_old_versions=False)
    return {"fragments": len(ds.get_fragments()), "versions_removed": int(getattr(stats, "old_versions", 0))}


def _append(warehouse: str, name: str, table: pa.Table, landed, attempts: int) -> int:
    """Append rows to an append-only table, again if a concurrent commit could not be rebased on;
    the rows are read back (`landed`) before the version is returned."""
    import time

    import lance

    uri = table_uri(warehouse, name)
    for attempt in range(attempts):
        try:
            version = int(lance.write_dataset(table, uri, schema=table.schema, mode="append").version)
        except OSError as error:
            if not any(word in str(error).lower() for word in ("conflict", "incompatible")):
                raise
            time.sleep(0.05 * (attempt + 1))
            continue
        if landed(lance.dataset(uri)):
            return version
    raise RuntimeError(f"{table.num_rows} rows did not land in '{uri}' in {attempts} attempts")


def cleanup_history(warehouse: str, name: str) -> int:
    """Remove the old versions of an append-only bookkeeping table (the candidates).

    Its rows hold everything worth keeping, so old versions are only files that grow one per
    build or evaluation. Only versions older than an hour go: a concurrent append's files are
    not yet in any version, and an age limit is what keeps Lance's cleanup off them.
    """
    from datetime import timedelta

    import lance

    ds = dataset(warehouse, name)
    if ds is None:
        return 0
    ds.optimize.compact_files()  # one small fragment per event otherwise: every read opens them all
    stats = lance.dataset(ds.uri).cleanup_old_versions(older_than=timedelta(hours=1), error_if_tagged_old_versions=False)
    return int(getattr(stats, "old_versions", 0))


def purge_changes(warehouse: str, where: str) -> int:
    """Remove the change log's rows matching `where` from every file of it; returns how many went.

    A Lance delete only marks rows, and older versions keep the files that hold them: the
    fragments are rewritten without the rows (compaction with every deletion materialised),
    then every version but the latest is removed. Snapshots older than the purge are gone
    with them (a candidate built on one cannot be re-evaluated).
    """
    from datetime import timedelta

    import lance

    from features.changes import CHANGES_TABLE

    ds = dataset(warehouse, CHANGES_TABLE)
    if ds is None:
        return 0
    doomed = ds.to_table(columns=["batch", "pos"], filter=where).to_pylist()
    count = len(doomed)
    if count:
        by_batch: dict[str, list[int]] = {}
        for row in doomed:
            by_batch.setdefault(row["batch"], []).append(int(row["pos"]))
        # by (batch, pos), never by `where`: Lance keeps a delete's predicate in the manifest, and it may name whom it removes
        ds.delete(" OR ".join(f"(batch = '{batch}' AND pos IN ({', '.join(map(str, pos))}))" for batch, pos in by_batch.items()))
        uri = table_uri(warehouse, CHANGES_TABLE)
        lance.dataset(uri).optimize.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
        release_snapshot_tags(warehouse, keep=set())  # a tagged snapshot would keep the rows' files
        # verified files only: an append in flight has files no version names yet, and must keep them
        lance.dataset(uri).cleanup_old_versions(older_than=timedelta(0), error_if_tagged_old_versions=False)
    return count


class PurgeConflict(RuntimeError):
    """Another commit landed on the table while a purge rewrote it: nothing was published."""


def purge_rows(warehouse: str, name: str, column: str, ids: Sequence[str], version: int) -> tuple[int, range] | None:
    """A new latest version of `name`: its `version` without the rows whose `column` is one of
    `ids`, rewritten so that no data file of the new version holds them; returns it and the
    versions of the rewrite's own steps before it (their files still hold the rows: see
    `drop_versions_holding`); None when no row matched.

    The rows are deleted by row id, never by a predicate naming them (Lance keeps a delete's
    predicate in its manifest). Each step must be the next commit of the table: a commit of
    anyone else in between (a build) raises PurgeConflict, so row ids never meet another
    version's rows and nothing half-rewritten is published.
    """
    import lance

    values = ", ".join("'" + key.replace("'", "''") + "'" for key in ids)
    ds = dataset(warehouse, name, version)
    doomed = ds.to_table(columns=[column], with_row_id=True, filter=f"{column} IN ({values})").column("_rowid").to_pylist()
    if not doomed:
        return None
    expected_rows = ds.count_rows() - len(doomed)
    uri = table_uri(warehouse, name)
    start = int(lance.dataset(uri).version)

    def step(number: int, what: str):
        latest = lance.dataset(uri)
        if int(latest.version) != start + number:
            raise PurgeConflict(f"'{name}' changed during the purge's {what} (version {latest.version}, expected {start + number}): "
                                "another job wrote it; nothing was published, run the purge again when no build-recs runs")
        return latest

    ds.restore()  # the released rows become the latest, whatever candidates were built since
    step(1, "restore").delete(f"_rowid IN ({', '.join(map(str, doomed))})")
    step(2, "delete").optimize.compact_files(materialize_deletions=True, materialize_deletions_threshold=0.0)
    rewritten = lance.dataset(uri)
    if rewritten.count_rows() != expected_rows or rewritten.count_rows(filter=f"{column} IN ({values})"):
        raise PurgeConflict(f"'{name}' version {rewritten.version} is not the purged release ({rewritten.count_rows()} rows, expected "
                            f"{expected_rows}): another job wrote it; nothing was published, run the purge again")
    return int(rewritten.version), range(start + 1, int(rewritten.version))


def drop_versions_holding(
    warehouse: str, name: str, column: str, ids: Sequence[str], also: Iterable[int] = (), keep: Iterable[int] = ()
) -> list[int]:
    """Remove every version of `name` but the latest that holds a row of `ids` (their tags
    first: a tagged version is never removed), so their files go; returns the versions removed.

    `also`: versions to remove whatever they hold (a purge's own steps, whose files hold rows
    its delete only marked); `keep`: versions never removed (what the release log serves).
    """
    import lance

    values = ", ".join("'" + key.replace("'", "''") + "'" for key in ids)
    ds = dataset(warehouse, name)
    if ds is None:
        return []
    also, keep = set(also), set(keep) | {int(ds.version)}
    doomed = [int(v["version"]) for v in ds.versions()
              if v["version"] not in keep and (v["version"] in also
                                               or dataset(warehouse, name, v["version"]).count_rows(filter=f"{column} IN ({values})"))]
    if doomed:
        for tag, info in list(ds.tags.list().items()):
            if int(info["version"]) in doomed:
                ds.tags.delete(tag)
        lance.dataset(ds.uri).cleanup_old_versions(versions=doomed, error_if_tagged_old_versions=False)
    return doomed
