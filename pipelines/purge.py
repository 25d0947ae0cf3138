"""`recqa purge users ID...`: forget users in the warehouse's files, not only in what is served.

`recqa delete users` makes the service and every later build forget a user; their vectors,
logged events and rejected rows still sit in the warehouse's files. Purge deletes them (if not
yet deleted), removes their events from every file of the change log (older versions
included) and their rows from `<warehouse>/_rejects/`, and rewrites the released `users`
table without them: the rewrite is published as a release of its own (action `purge`), then
every older `users` version that holds them is removed with its files. Releases and
candidates that named a removed version can no longer be rolled back to or published (say
so, never silently). It keeps the delete itself (the id alone): the input files may still
hold the user's events, and that delete is what keeps every build from bringing them back.
Run it when no build-recs is running: a build started before it would still hold them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from features.changes import EVENTS, USERS, parse_deletes
from features.errors import InputError
from features.schemas import USERS_TABLE
from pipelines import lance_io
from pipelines.flags import add_warehouse_argument
from pipelines.ingest import _read_ids
from pipelines.options import command_parser, parse_flags
from registry.log import read_releases


@dataclass(frozen=True)
class PurgeResult:
    """What purge removed, and what still holds the users."""

    users: list[str]
    log_rows: int
    reject_rows: int
    still: list[str] = field(default_factory=list)
    users_version: int | None = None  # the rewritten users table, published; None: no table held them
    removed_versions: list[int] = field(default_factory=list)
    unreachable_releases: list[int] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"  {len(self.users)} user(s) deleted and purged: {self.log_rows} logged event(s) removed from the change log "
                 f"(every version), {self.reject_rows} rejected row(s) from _rejects/"]
        if self.users_version is not None:
            lines.append(f"  users table rewritten without them as version {self.users_version} and published; "
                         f"versions {self.removed_versions} that held them removed with their files")
        if self.unreachable_releases:
            lines.append(f"  releases {self.unreachable_releases} named a removed version: they can no longer be rolled back to")
        lines += [f"  still held: {line}" for line in self.still] or ["  nothing else in the warehouse holds them"]
        return "\n".join(lines)


def purge_parser() -> argparse.ArgumentParser:
    parser = command_parser("recqa purge", __doc__.splitlines()[0].split(": ", 1)[1], epilog=__doc__.split("\n\n")[1])
    parser.add_argument("kind", choices=[USERS], help="what the ids name (users)")
    parser.add_argument("ids", nargs="*", metavar="ID", help="user ids to forget")
    parser.add_argument("--ids-file", default=None, metavar="FILE", help="also the ids of this file, one a line (blank lines skipped)")
    add_warehouse_argument(parser, "whose change log, _rejects/ and users table are purged")
    return parser


def _sql_list(ids: Sequence[str]) -> str:
    return ", ".join("'" + key.replace("'", "''") + "'" for key in ids)


def _holds(value: object, ids: set[str]) -> bool:
    if isinstance(value, str):
        return value in ids or any(key in value for key in ids)
    if isinstance(value, list):
        return any(_holds(v, ids) for v in value)
    if isinstance(value, dict):
        return any(_holds(v, ids) for v in value.values())
    return False


def purge_rejects(warehouse: str, ids: set[str]) -> int:
    """Remove the interactions rejects naming any of `ids` from every `_rejects/<run>/<kind>.jsonl`; returns how many."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.transforms.read import ensure_filesystem_options

    ensure_filesystem_options()
    removed = 0
    for match in FileSystems.match([f"{warehouse.rstrip('/')}/_rejects/*/*.jsonl"])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            lines = handle.read().decode("utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = line
            if isinstance(record, dict) and record.get("kind") == "interactions" and _holds(record.get("row"), ids):
                continue
            if not isinstance(record, dict) and _holds(record, ids):
                continue
            kept.append(line)
        if len(kept) < len(lines):
            removed += len(lines) - len(kept)
            if kept:
                with FileSystems.create(match.path) as handle:
                    handle.write(("\n".join(kept) + "\n").encode("utf-8"))
            else:
                FileSystems.delete([match.path])
    return removed


def still_held(warehouse: str, ids: Sequence[str]) -> list[str]:
    """The versions of the users table that still hold a vector of any of `ids` (none after a purge)."""
    ds = lance_io.dataset(warehouse, USERS_TABLE)
    if ds is None:
        return []
    holding = [int(v["version"]) for v in ds.versions()
               if lance_io.dataset(warehouse, USERS_TABLE, v["version"]).count_rows(filter=f"user_id IN ({_sql_list(ids)})")]
    return [f"users table versions {holding}"] if holding else []


def purge_users_table(warehouse: str, ids: Sequence[str], attempts: int = 3) -> tuple[int | None, list[int], list[int]]:
    """Publish the released users table without `ids`, then remove every version holding them.

    Returns the new version (None when the release held none of them), the versions removed,
    and the releases of the log that named one of those. A publish racing the purge's own
    makes it start again from the new release; a version the release log then serves is
    never removed (still_held names it if it holds them).
    """
    new, ours = None, set()
    for attempt in range(attempts):
        log = read_releases(warehouse)
        current = log.current
        if current is None or USERS_TABLE not in current.tables:
            break
        rewrite = lance_io.purge_rows(warehouse, USERS_TABLE, "user_id", ids, current.tables[USERS_TABLE])
        if rewrite is None:
            break
        new, steps = rewrite
        ours |= set(steps)
        try:
            lance_io.publish_release(warehouse, log, {USERS_TABLE: new}, retain_releases=len(log.releases) + 1, action="purge")
            break
        except lance_io.ReleaseConflict:
            ours.add(new)  # never published: a rewrite like the others, removed below
            new = None
            if attempt == attempts - 1:
                raise
    served = {r.tables[USERS_TABLE] for r in read_releases(warehouse).releases[-1:] if USERS_TABLE in r.tables}
    removed = lance_io.drop_versions_holding(warehouse, USERS_TABLE, "user_id", ids, also=ours, keep=served)
    unreachable = [r.number for r in read_releases(warehouse).releases if r.tables.get(USERS_TABLE) in set(removed)]
    return new, removed, unreachable


def run(argv: Sequence[str] | None = None) -> PurgeResult:
    """Delete the users (logged), then purge them from the change log's files, _rejects/ and the users table."""
    args = parse_flags(purge_parser(), argv)
    ids = list(args.ids) + (_read_ids(args.ids_file) if args.ids_file else [])
    if not ids:
        raise InputError("no ids given; name them after the kind or with --ids-file FILE", field="ID")
    changes, rejected = parse_deletes(USERS, ids)
    if rejected:
        raise InputError(f"id {rejected[0].index + 1}: {rejected[0].reason}; nothing was purged", field="ID")
    keys = sorted({c.key for c in changes})
    lance_io.append_changes(args.warehouse, changes)  # forgotten by the service and every build from now on
    log_rows = lance_io.purge_changes(args.warehouse, f"kind = '{EVENTS}' AND key IN ({_sql_list(keys)})")
    reject_rows = purge_rejects(args.warehouse, set(keys))
    version, removed, unreachable = purge_users_table(args.warehouse, keys)
    return PurgeResult(keys, log_rows, reject_rows, still_held(args.warehouse, keys), version, removed, unreachable)
