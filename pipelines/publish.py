"""`recqa publish`: release the table versions of evaluated candidates, together.

Publish takes candidates by id (`--candidate`), never "the latest tables": the versions
released are exactly those the candidate's evaluation judged, and a candidate whose
evaluation failed, or that was never evaluated, is refused unless `--force` (recorded in
the release). A release names a version of every table and lands in one compare-and-swap
commit of the release log, after the checks pass: readers see all of it or none of it, and
of two racing publishes (or a publish and a rollback) one lands and the other fails, changing
nothing. Versions no retained release names are cleaned up afterwards. The service follows the log.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from features.candidates import CANDIDATES_TABLE, LATEST, Candidate, resolve_candidate
from features.errors import InputError
from features.releases import Release
from features.schemas import ALS_INDEX, RECQA_TABLES
from pipelines import lance_io
from pipelines.checks import check_tables
from pipelines.flags import add_warehouse_argument
from pipelines.options import JobResult, command_parser, parse_flags
from registry.log import missing_versions, read_candidates, read_releases

ALL_TABLES = RECQA_TABLES
DEFAULT_RETAIN_RELEASES = 5
DEFAULT_MAX_SHRINK = 0.20  # a table losing more than this share of the published rows is refused
# The service checks the release log every RECQA_RELOAD_SECONDS (10 by default); allow many of those.
DEFAULT_AWAIT_TIMEOUT_SECONDS = 300.0
DEFAULT_POLL_SECONDS = 5.0


class PublishError(RuntimeError):
    """The run's tables failed a check; nothing was published."""


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = command_parser(prog, description)
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


def chosen_candidates(warehouse: str, refs: Sequence[str]) -> list[Candidate]:
    """The candidates `--candidate` names, one per kind (ids only: publish never means "the newest")."""
    known = read_candidates(warehouse)
    chosen: dict[str, Candidate] = {}
    for ref in refs:
        if ref == LATEST:
            raise InputError("publish takes candidate ids, not 'latest': name what was evaluated (`recqa candidates` lists them)",
                             field="--candidate")
        candidate = resolve_candidate(known, ref)
        if candidate.kind in chosen and chosen[candidate.kind].id != candidate.id:
            raise InputError(f"two {candidate.kind} candidates named ({chosen[candidate.kind].id}, {candidate.id}): a release takes one of each kind", field="--candidate")
        chosen[candidate.kind] = candidate
    return list(chosen.values())


def verdict_problems(candidates: Sequence[Candidate], current: Release | None) -> list[str]:
    """Why each candidate may not be published without --force: never evaluated, failed, or judged
    against another release than the one now served (its verdict no longer says it is no worse)."""
    problems = []
    for candidate in candidates:
        evaluation = candidate.evaluation
        served = {name: current.tables[name] for name in candidate.tables if current is not None and name in current.tables}
        if evaluation is None:
            problems.append(f"{candidate.id}: never evaluated (run `recqa evaluate {candidate.kind} --candidate {candidate.id}`)")
        elif not evaluation.passed:
            failed = "; ".join(g.get("text", g.get("name", "?")) for g in evaluation.gates if not g.get("passed"))
            problems.append(f"{candidate.id}: its evaluation failed ({failed}); report {evaluation.report}")
        elif evaluation.against != served and served != candidate.tables:  # (a candidate already served needs no comparison)
            problems.append(f"{candidate.id}: judged against {evaluation.against or 'nothing published'}, but {served or 'nothing'} "
                            f"is published now; evaluate it again (`recqa evaluate {candidate.kind} --candidate {candidate.id}`)")
    return problems


def shrink_problems(warehouse: str, current: Release | None, candidates: Sequence[Candidate], max_shrink: float) -> list[str]:
    """Tables that would lose more than `max_shrink` of the published release's rows."""
    problems = []
    for candidate in candidates:
        for name, version in candidate.tables.items():
            if current is None or name not in current.tables:
                continue
            published = lance_io.dataset(warehouse, name, current.tables[name])
            if published is None:
                continue
            before, after = int(published.count_rows()), candidate.rows.get(name, 0)
            if before and after < before * (1 - max_shrink):
                problems.append(f"{name}: {after} rows against {before} published ({1 - after / before:.0%} fewer, limit {max_shrink:.0%})")
    return problems


def publish_parser() -> argparse.ArgumentParser:
    """`recqa publish`'s flags."""
    parser = command_parser("recqa publish", __doc__.splitlines()[0])
    add_warehouse_argument(parser)
    parser.add_argument("--candidate", action="append", required=True, metavar="ID",
                        help="a candidate to release (repeatable, one per kind); `recqa candidates` lists them")
    parser.add_argument("--force", action="store_true", help="publish candidates that failed or never had an evaluation (recorded in the release)")
    parser.add_argument("--max-shrink", type=float, default=DEFAULT_MAX_SHRINK,
                        help=f"refuse a table with this share fewer rows than the published release's (default {DEFAULT_MAX_SHRINK})")
    parser.add_argument("--allow-shrink", action="store_true", help="publish even when a table shrank more than --max-shrink")
    parser.add_argument("--retain-releases", type=int, default=DEFAULT_RETAIN_RELEASES, help=f"releases kept for rollback (default {DEFAULT_RETAIN_RELEASES})")
    parser.add_argument("--ann-min-rows", type=int, default=ALS_INDEX.min_rows_for_ann, help="tables this large must have a vector index")
    return parser



def snapshots_to_keep(candidates: Sequence[Candidate], kept: Sequence[Release]) -> set[str]:
    """The candidates whose change log snapshot must stay readable: those a retained release
    serves or could roll back to, and those built since the oldest of them (they may still be
    evaluated and published). Older ones' snapshots are no longer needed by anything."""
    named = {candidate for release in kept for candidate in release.candidates.values()}
    since = min((release.created_at for release in kept), default=None)
    return named | {c.id for c in candidates if since is None or c.created_at >= since}


def run(argv: Sequence[str] | None = None) -> JobResult:
    """Publish the candidates' table versions, or raise PublishError listing what failed."""
    args = parse_flags(publish_parser(), argv)
    if args.retain_releases < 1:
        raise InputError("must keep at least one release", field="--retain-releases")
    if not 0 <= args.max_shrink < 1:
        raise InputError(f"must be in [0, 1), got {args.max_shrink}", field="--max-shrink")
    log = read_releases(args.warehouse)  # read first: the release must follow this log
    candidates = chosen_candidates(args.warehouse, args.candidate)
    unjudged = verdict_problems(candidates, log.current)
    if unjudged and not args.force:
        raise PublishError("not published:\n  " + "\n  ".join(unjudged) + "\n(--force publishes anyway and records it in the release)")
    if (problems := shrink_problems(args.warehouse, log.current, candidates, args.max_shrink)) and not args.allow_shrink:
        raise PublishError("not published; tables shrank:\n  " + "\n  ".join(problems) + "\n(--allow-shrink publishes anyway)")
    versions = {name: version for candidate in candidates for name, version in candidate.tables.items()}
    current = log.current.tables if log.current is not None else {}
    problems = check_tables(args.warehouse, {**current, **versions}, args.ann_min_rows)
    if problems:
        raise PublishError("not published; the tables failed their checks:\n  " + "\n  ".join(problems))
    try:
        release = lance_io.publish_release(
            args.warehouse, log, versions, args.retain_releases,
            candidates={c.kind: c.id for c in candidates},
            forced=[c.kind for c in candidates if any(p.startswith(f"{c.id}:") for p in unjudged)],
            reports={c.kind: c.evaluation.report_sha256 if c.evaluation is not None else "" for c in candidates},
        )
    except lance_io.ReleaseConflict as error:
        raise PublishError(f"not published: {error}; run publish again") from error
    kept = read_releases(args.warehouse).releases  # read once, after the commit
    for name in release.tables:
        lance_io.cleanup_table(args.warehouse, name, kept)
    lance_io.cleanup_history(args.warehouse, CANDIDATES_TABLE)  # its rows are the history; old versions are only files
    lance_io.release_snapshot_tags(args.warehouse, snapshots_to_keep(read_candidates(args.warehouse), kept))
    lance_io.compact_changes(args.warehouse)
    # the whole release, as served; rows of the tables this publish changed
    return JobResult(versions=release.tables, rows={name: c.rows[name] for c in candidates for name in c.tables if name in c.rows})


def rollback_problems(warehouse: str, current: Release, previous: Release) -> list[str]:
    """Why `previous` cannot be served in place of `current`, or [] when it can.

    A service asked to serve a version that no longer exists keeps serving the old one and only
    logs it, so a rollback to it would show a release as published that nothing serves. And a
    release without a table the current one serves would take an endpoint away with it.
    """
    problems = [
        f"'{name}' version {version}, which release {previous.number} names, no longer exists (cleaned up)"
        for name, version in sorted(missing_versions(warehouse, previous).items())
    ]
    problems += [
        f"release {previous.number} has no '{name}' table, which release {current.number} serves: rolling back would stop serving it"
        for name in sorted(set(current.tables) - set(previous.tables))
    ]
    return problems


def rollback_parser() -> argparse.ArgumentParser:
    """`recqa rollback`'s flags."""
    parser = command_parser("recqa rollback", "Publish the previous release again.")
    add_warehouse_argument(parser)
    return parser


def rollback(argv: Sequence[str] | None = None) -> JobResult:
    """Publish the release before the current one again (every table of it), if it can be served whole."""
    args = parse_flags(rollback_parser(), argv)
    log = read_releases(args.warehouse)  # checked and committed on this one read: a moved log fails the commit
    if len(log.releases) < 2:
        raise PublishError(f"not rolled back: no earlier release in '{args.warehouse}' ({len(log.releases)} in the log)")
    current, previous = log.releases[-1], log.releases[-2]
    if problems := rollback_problems(args.warehouse, current, previous):
        raise PublishError(
            f"not rolled back: release {previous.number} cannot replace release {current.number}:\n  " + "\n  ".join(problems)
            + f"\n(release {current.number} stays published; to change what is served, publish an evaluated candidate: "
            "`recqa candidates` lists them)"
        )
    try:
        release = lance_io.rollback_release(args.warehouse, log)
    except lance_io.ReleaseConflict as error:
        raise PublishError(f"not rolled back: {error}; check `recqa releases` and try again") from error
    return JobResult(versions=release.tables, rows={})


API_TOKEN_VARIABLE = "RECQA_API_TOKEN"  # the service's own variable: the same value opens its guard


class ServiceRefused(PublishError):
    """The service answered 401/403: waiting cannot help, the token is missing or wrong."""


def _served_tables(service_url: str, token: str | None) -> tuple[dict[str, int], int] | str:
    """The table versions GET /version reports and the service's worker count, or why they could
    not be read (raises on 401/403)."""
    request = urllib.request.Request(f"{service_url.rstrip('/')}/version")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
            return {name: int(v) for name, v in body.get("tables", {}).items()}, int((body.get("encoder") or {}).get("workers", 1))
    except urllib.error.HTTPError as error:  # 503 while the service is not ready
        if error.code in (401, 403):
            given = f"the {API_TOKEN_VARIABLE} given" if token else f"no token ({API_TOKEN_VARIABLE} is not set)"
            raise ServiceRefused(
                f"{service_url} refused GET /version with HTTP {error.code}: {given}; set {API_TOKEN_VARIABLE} "
                "in this environment to the service's RECQA_API_TOKEN"
            ) from None
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return str(error)


def await_parser() -> argparse.ArgumentParser:
    """`recqa await-service`'s flags."""
    parser = _parser("recqa await-service", "Wait until a running service serves the published table versions. "
                     f"With {API_TOKEN_VARIABLE} set, it is sent as a bearer token.")
    parser.add_argument("--service-url", default="", help="base URL of a running `recqa serve` (default: none, nothing to wait for)")
    parser.add_argument("--timeout-seconds", type=float, default=DEFAULT_AWAIT_TIMEOUT_SECONDS,
                        help="fail when the service does not serve the published versions within this long")
    parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS, help="wait between two GET /version")
    return parser


def await_service(argv: Sequence[str] | None = None) -> JobResult:
    """Wait until the service at --service-url serves the published versions (it follows the release log).

    A service guarded by RECQA_API_TOKEN is asked with that token, read from this process's
    environment only (a flag's value would show in process lists and task logs).
    """
    args = parse_flags(await_parser(), argv)
    names = _tables(args.warehouse, args.tables)
    current = read_releases(args.warehouse).current
    published = {name: current.tables.get(name) if current is not None else None for name in names}
    if missing := sorted(name for name, version in published.items() if version is None):
        raise PublishError(f"nothing published yet for {missing} in '{args.warehouse}'")
    if not args.service_url:
        print(f"no --service-url given: nothing to wait for (a service on '{args.warehouse}' picks up the release "
              "within its RECQA_RELOAD_SECONDS)")
        return JobResult(versions=published)
    token = os.environ.get(API_TOKEN_VARIABLE) or None
    deadline = time.monotonic() + args.timeout_seconds
    while True:
        answer = _served_tables(args.service_url, token)
        served, workers = answer if isinstance(answer, tuple) else (answer, 1)  # (tables, workers), or why not read
        if isinstance(served, dict) and all(served.get(name) == version for name, version in published.items()):
            print(f"{args.service_url} serves the published versions")
            if workers > 1:  # each worker follows the release log on its own; one answered
                print(f"warning: the service runs {workers} workers and this answer came from one; the others "
                      "serve the release after their next check of the release log (RECQA_RELOAD_SECONDS)")
            return JobResult(versions=published)
        if time.monotonic() >= deadline:
            raise PublishError(
                f"{args.service_url} still serves {served} after {args.timeout_seconds:.0f} s; published: {published}"
            )
        time.sleep(args.poll_seconds)
