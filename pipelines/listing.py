"""`recqa releases` and `recqa candidates`: what the warehouse holds, read-only."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from features.candidates import KINDS
from features.errors import InputError
from pipelines.flags import add_warehouse_argument
from pipelines.options import JobResult, command_parser, parse_flags
from registry.log import existing_versions, read_candidates, read_releases


def releases_parser() -> argparse.ArgumentParser:
    """`recqa releases`' flags."""
    parser = command_parser("recqa releases", "List the retained releases; the last is published.")
    add_warehouse_argument(parser)
    return parser


def candidates_parser() -> argparse.ArgumentParser:
    """`recqa candidates`' flags."""
    parser = command_parser("recqa candidates", "List the built candidates and their verdicts.")
    add_warehouse_argument(parser)
    parser.add_argument("--kind", choices=KINDS, default=None, help="only candidates of this kind (default: every kind)")
    parser.add_argument("--last", type=int, default=20, help="show the newest N (default 20)")
    return parser


def releases(argv: Sequence[str] | None = None) -> JobResult:
    """List the release log, oldest first; the last release is the published one."""
    args = parse_flags(releases_parser(), argv)
    log = read_releases(args.warehouse)
    if log.current is None:
        raise InputError(f"nothing published yet in '{args.warehouse}'", field="--warehouse")
    existing = {name: existing_versions(args.warehouse, name) for name in {n for r in log.releases for n in r.tables}}
    lines = [
        f"  release {r.number:>4}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.action:<8}  "
        + "  ".join(f"{name} v{version}" + ("" if version in existing[name] else " (GONE)") for name, version in sorted(r.tables.items()))
        + ("".join(f"  {kind}={cid}" for kind, cid in sorted(r.candidates.items())))
        + ("  FORCED" if r.forced else "")
        for r in log.releases
    ]
    if any(version not in existing[name] for r in log.releases for name, version in r.tables.items()):
        # a service cannot open a version that is gone: it keeps what it served and logs why
        lines.append("  (GONE: that table version was cleaned up; `recqa rollback` refuses a release naming one)")
    return JobResult(versions=log.current.tables, stages="\n".join(lines))


def candidates(argv: Sequence[str] | None = None) -> JobResult:
    """List the candidates, oldest first, with their tables, verdict and whether they are published."""
    args = parse_flags(candidates_parser(), argv)
    found = [c for c in read_candidates(args.warehouse) if args.kind is None or c.kind == args.kind]
    if not found:
        raise InputError(f"no candidates in '{args.warehouse}': run build-recs or build-qa first", field="--warehouse")
    current = read_releases(args.warehouse).current
    published = set(current.candidates.values()) if current is not None else set()
    lines = []
    for c in found[-args.last :]:
        verdict = "not evaluated" if c.evaluation is None else ("passed" if c.evaluation.passed else "FAILED")
        headline = "".join(f"  {m} {v:.4f}" for m, v in (c.evaluation.headline if c.evaluation else {}).items())
        tables = "  ".join(f"{name} v{version}" for name, version in sorted(c.tables.items()))
        lines.append(f"  {c.id:<30} {c.created_at:%Y-%m-%d %H:%M:%S}  {tables}  {verdict}{headline}"
                     + ("  PUBLISHED" if c.id in published else ""))
    return JobResult(stages="\n".join(lines))
