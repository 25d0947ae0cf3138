"""`recqa publish`: check the latest table versions, then release them together.

A release names a version of every table and lands in one compare-and-swap commit of the
release log, after the checks pass: readers see all of it or none of it, and of two racing
publishes (or a publish and a rollback) one lands and the other fails, changing nothing.
Versions no retained release names are cleaned up afterwards. The service follows the log.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from features.errors import InputError
from features.locations import add_warehouse_argument
from features.schemas import ALS_INDEX, RECQA_TABLES
from pipelines import lance_io
from pipelines.checks import check_tables
from pipelines.options import JobResult
from registry.log import read_releases

ALL_TABLES = RECQA_TABLES
DEFAULT_RETAIN_RELEASES = 5
# The service checks the release log every RECQA_RELOAD_SECONDS (10 by default); allow many of those.
DEFAULT_AWAIT_TIMEOUT_SECONDS = 300.0
DEFAULT_POLL_SECONDS = 5.0


class PublishError(RuntimeError):
    """The run's tables failed a check; nothing was published."""


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_warehouse_argument(parser)
    parser.add_argument("--tables", default=None, help="comma-separated tables (default: every recqa table present)")
    return parser


def _tables(warehouse: str, listed: str | None) -> list[str]:
    if listed:
        names = [name.strip() for name in listed.split(",") if name.strip()]
        unknown = sorted(set(names) - set(ALL_TABLES))
        if unknown:
            raise InputError(f"unknown tables {unknown}; expected some of {list(ALL_TABLES)}", field="--tables")
        if missing := [name for name in names if lance_io.dataset(warehouse, name) is None]:
            raise InputError(f"tables {missing} do not exist in '{warehouse}': build them first", field="--tables")
        return names
    names = [name for name in ALL_TABLES if lance_io.dataset(warehouse, name) is not None]
    if not names:
        raise InputError(f"no recqa tables in '{warehouse}': run build-recs or build-qa first", field="--warehouse")
    return names


def run(argv: Sequence[str] | None = None) -> JobResult:
    """Publish the latest versions of the tables, or raise PublishError listing what failed."""
    parser = _parser("recqa publish", __doc__.splitlines()[0])
    parser.add_argument("--retain-releases", type=int, default=DEFAULT_RETAIN_RELEASES, help="releases kept for rollback")
    parser.add_argument("--ann-min-rows", type=int, default=ALS_INDEX.min_rows_for_ann, help="tables this large must have a vector index")
    args = parser.parse_args(argv)
    if args.retain_releases < 1:
        raise InputError("must keep at least one release", field="--retain-releases")
    names = _tables(args.warehouse, args.tables)
    log = read_releases(args.warehouse)  # read first: the release must follow this log
    versions = lance_io.table_versions(args.warehouse, names)
    current = log.current.tables if log.current is not None else {}
    problems = check_tables(args.warehouse, {**current, **versions}, args.ann_min_rows)
    if problems:
        raise PublishError("not published; the tables failed their checks:\n  " + "\n  ".join(problems))
    try:
        release = lance_io.publish_release(args.warehouse, log, versions, args.retain_releases)
    except lance_io.ReleaseConflict as error:
        raise PublishError(f"not published: {error}; run publish again to release the latest versions") from error
    kept = read_releases(args.warehouse).releases  # read once, after the commit
    for name in release.tables:
        lance_io.cleanup_table(args.warehouse, name, kept)
    return JobResult(versions=versions, rows=lance_io.table_rows(args.warehouse, names))


def rollback(argv: Sequence[str] | None = None) -> JobResult:
    """Publish the release before the current one again (every table of it)."""
    parser = argparse.ArgumentParser(prog="recqa rollback", description="Publish the previous release again.")
    add_warehouse_argument(parser)
    args = parser.parse_args(argv)
    try:
        release = lance_io.rollback_release(args.warehouse)
    except lance_io.ReleaseConflict as error:
        raise PublishError(f"not rolled back: {error}; check `recqa releases` and try again") from error
    return JobResult(versions=release.tables, rows={})


def releases(argv: Sequence[str] | None = None) -> JobResult:
    """List the release log, oldest first; the last release is the published one."""
    parser = argparse.ArgumentParser(prog="recqa releases", description="List the retained releases; the last is published.")
    add_warehouse_argument(parser)
    args = parser.parse_args(argv)
    log = read_releases(args.warehouse)
    if log.current is None:
        raise InputError(f"nothing published yet in '{args.warehouse}'", field="--warehouse")
    lines = [
        f"  release {r.number:>4}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.action:<8}  "
        + "  ".join(f"{name} v{version}" for name, version in sorted(r.tables.items()))
        for r in log.releases
    ]
    return JobResult(versions=log.current.tables, stages="\n".join(lines))


def _served_tables(service_url: str) -> dict[str, int] | str:
    """The table versions GET /version reports, or why they could not be read."""
    try:
        with urllib.request.urlopen(f"{service_url.rstrip('/')}/version", timeout=10) as response:
            return {name: int(v) for name, v in json.load(response).get("tables", {}).items()}
    except urllib.error.HTTPError as error:  # 503 while the service is not ready
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return str(error)


def await_service(argv: Sequence[str] | None = None) -> JobResult:
    """Wait until the service at --service-url serves the published versions (it follows the release log)."""
    parser = _parser("recqa await-service", "Wait until a running service serves the published table versions.")
    parser.add_argument("--service-url", default="", help="base URL of a running `recqa serve`; empty: nothing to wait for")
    parser.add_argument("--timeout-seconds", type=float, default=DEFAULT_AWAIT_TIMEOUT_SECONDS)
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS)
    args = parser.parse_args(argv)
    names = _tables(args.warehouse, args.tables)
    current = read_releases(args.warehouse).current
    published = {name: current.tables.get(name) if current is not None else None for name in names}
    if missing := sorted(name for name, version in published.items() if version is None):
        raise PublishError(f"nothing published yet for {missing} in '{args.warehouse}'")
    if not args.service_url:
        print(f"no --service-url: a service on '{args.warehouse}' picks up {published} within its RECQA_RELOAD_SECONDS")
        return JobResult(versions=published)
    deadline = time.monotonic() + args.timeout_seconds
    while True:
        served = _served_tables(args.service_url)
        if isinstance(served, dict) and all(served.get(name) == version for name, version in published.items()):
            return JobResult(versions=published)
        if time.monotonic() >= deadline:
            raise PublishError(
                f"{args.service_url} still serves {served} after {args.timeout_seconds:.0f} s; published: {published}"
            )
        time.sleep(args.poll_seconds)
