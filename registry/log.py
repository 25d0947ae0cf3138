"""Read the release log and the candidates of a warehouse (read-only; lance_io writes them)."""

from __future__ import annotations

from dataclasses import dataclass

from features.candidates import CANDIDATES_TABLE, Candidate, candidates_from_arrow, resolve_candidate
from features.changes import CHANGES_TABLE, RECORD_COLUMNS, Change, changes_from_arrow
from features.releases import RELEASES_TABLE, Release, releases_from_arrow, tagged_release
from features.schemas import PUBLISHED_TAG, RECQA_TABLES, table_uri


@dataclass(frozen=True)
class ReleaseLog:
    """The release log as read, and the log version a change to it must directly follow."""

    releases: tuple[Release, ...]
    version: int | None  # None: no log yet (nothing ever published)

    @property
    def current(self) -> Release | None:
        return self.releases[-1] if self.releases else None


def is_missing_dataset(error: Exception) -> bool:
    """Whether Lance's error on opening a dataset means it does not exist (not that it is broken)."""
    return "was not found" in str(error)


def _open(warehouse: str, name: str):
    """The latest version of a warehouse table, or None when it does not exist (other errors raise)."""
    import lance

    try:
        return lance.dataset(table_uri(warehouse, name))
    except ValueError as error:
        if not is_missing_dataset(error):
            raise
        return None


def read_releases(warehouse: str) -> ReleaseLog:
    """The release log's latest version; before the first publish, what the tags published.

    A warehouse published by an older recqa has `published` tags but no log: its tagged
    versions are the current release, so the first publish keeps them in the log and a
    service started on it serves them. A log that exists but cannot be read is an error,
    never taken for an empty one.
    """
    ds = _open(warehouse, RELEASES_TABLE)
    if ds is None:
        tagged = tagged_release(published_tags(warehouse))
        return ReleaseLog((tagged,) if tagged is not None else (), None)
    return ReleaseLog(tuple(releases_from_arrow(ds.to_table())), int(ds.version))


def published_tags(warehouse: str) -> dict[str, int]:
    """The version each recqa table's `published` tag names (tables without one left out)."""
    import lance

    tables = {}
    for name in RECQA_TABLES:
        try:
            ds = lance.dataset(table_uri(warehouse, name))
        except (FileNotFoundError, ValueError, OSError):
            continue
        if PUBLISHED_TAG in ds.tags.list():
            tables[name] = int(ds.tags.get_version(PUBLISHED_TAG))
    return tables


def published_versions(warehouse: str) -> dict[str, int] | None:
    """The recqa tables the current release names, with their versions; None before any release.

    One read of the log gives one release, so the versions always belong together. A release
    may name only some tables (a QA-only or recs-only warehouse).
    """
    current = read_releases(warehouse).current
    if current is None:
        return None
    tables = {name: current.tables[name] for name in RECQA_TABLES if name in current.tables}
    return tables or None


def published_version(warehouse: str, name: str) -> int | None:
    """The version of `name` in the current release, or None before it is first published."""
    current = read_releases(warehouse).current
    return current.tables.get(name) if current is not None else None


def existing_versions(warehouse: str, name: str) -> set[int]:
    """The versions of `name` still in the warehouse (none when the table is gone); cleanup removes old ones."""
    ds = _open(warehouse, name)
    return {int(v["version"]) for v in ds.versions()} if ds is not None else set()


def missing_versions(warehouse: str, release: Release) -> dict[str, int]:
    """The tables of `release` whose named version no longer exists, with that version."""
    return {name: version for name, version in release.tables.items() if version not in existing_versions(warehouse, name)}


def read_candidates(warehouse: str) -> list[Candidate]:
    """Every candidate of the warehouse, oldest first (none before the first build)."""
    ds = _open(warehouse, CANDIDATES_TABLE)
    return candidates_from_arrow(ds.to_table()) if ds is not None else []


def find_candidate(warehouse: str, ref: str, kind: str | None = None, flag: str = "--candidate") -> Candidate:
    """The candidate `ref` (an id or `latest`) names, or an InputError naming the flag."""
    return resolve_candidate(read_candidates(warehouse), ref, kind, flag)


@dataclass(frozen=True)
class ChangeLog:
    """The change log at one version: the snapshot a build applies, or what a service overlays."""

    changes: tuple[Change, ...]
    version: int  # 0: no log yet


def changes_version(warehouse: str) -> int:
    """The change log's latest version, 0 before the first write: a manifest read, no rows."""
    ds = _open(warehouse, CHANGES_TABLE)
    return int(ds.version) if ds is not None else 0


def read_changes(warehouse: str, version: int | None = None, after: int | None = None) -> ChangeLog:
    """The acknowledged writes at `version` (default the latest), in commit order.

    `after`: only the changes committed after that version, the ones a build that applied
    the log at `after` has not seen (0 or None: all of them). When `recqa purge` has removed
    that version, every change is returned: a superset, which is safe to apply again over the
    build (upserts and deletes land the same; a logged event counts once more in a fold-in).
    """
    ds = _open(warehouse, CHANGES_TABLE)
    if ds is None:
        return ChangeLog((), 0)
    if version is not None:
        ds = ds.checkout_version(version)
    if after:  # what a follower standing at `after` reads next: the same code path as the service's
        new, _ = read_new_changes(warehouse, int(ds.version), change_cursor(warehouse, after))
        return ChangeLog(new, int(ds.version))
    return ChangeLog(tuple(changes_from_arrow(ds.to_table(columns=RECORD_COLUMNS))), int(ds.version))


@dataclass(frozen=True)
class ChangeCursor:
    """How far a follower of the change log has read: the log version, the fragments it has
    read, and the writer batches they held.

    Appends add fragments and never touch old ones, so what is new at a later version is in
    the fragments not read yet; a compaction rewrites old rows into new fragments, which the
    batch ids (one per commit) tell apart from new ones.
    """

    version: int = 0
    fragments: frozenset[int] = frozenset()
    batches: frozenset[str] = frozenset()


def change_cursor(warehouse: str, version: int) -> ChangeCursor:
    """The cursor of a reader that has seen the log up to `version` (a build that applied it).

    0, or a version a purge or cleanup has removed: the cursor of a reader that saw nothing,
    so the follower reads every change (the superset `read_changes(after=...)` gives too).
    """
    ds = _open(warehouse, CHANGES_TABLE)
    if ds is None or not version:
        return ChangeCursor()
    try:
        ds = ds.checkout_version(version)
    except OSError as error:
        if not is_missing_dataset(error):
            raise
        return ChangeCursor()
    batches = ds.to_table(columns=["batch"]).column("batch").unique().to_pylist()
    return ChangeCursor(int(version), frozenset(f.fragment_id for f in ds.get_fragments()), frozenset(batches))


def read_new_changes(warehouse: str, version: int, cursor: ChangeCursor) -> tuple[tuple[Change, ...], ChangeCursor]:
    """The changes of the log at `version` that `cursor` has not read, in commit
    order, and the cursor after them: the read costs the new rows, not the whole log."""
    ds = _open(warehouse, CHANGES_TABLE)
    if ds is None or version <= cursor.version:
        return (), cursor
    ds = ds.checkout_version(version)
    fragments = ds.get_fragments()
    unread = [f for f in fragments if f.fragment_id not in cursor.fragments]
    ids = frozenset(f.fragment_id for f in fragments)
    if not unread:
        return (), ChangeCursor(int(version), ids, cursor.batches)
    batches = ds.scanner(fragments=unread, columns=["batch"]).to_table().column("batch").unique().to_pylist()
    new = [batch for batch in batches if batch not in cursor.batches]  # a compaction's fragment may hold read batches beside new ones
    if not new:
        return (), ChangeCursor(int(version), ids, cursor.batches)
    listed = ", ".join("'" + batch.replace("'", "''") + "'" for batch in new)
    table = ds.scanner(fragments=unread, filter=f"batch IN ({listed})").to_table()
    return tuple(changes_from_arrow(table)), ChangeCursor(int(version), ids, cursor.batches | set(new))
