"""Lets `make run` skip `make build` when nothing it depends on changed since the last one.

`make build` tunes, builds, evaluates and publishes; its outcome depends on the bundled data
(`data/`), the code that builds, evaluates and publishes, the pinned dependencies (the model
comes from a pinned package) and the Makefile's settings. After a build has published, `write`
records a sha256 over all of those, and the release that build published. `check` says "up to
date" only when the sha256 is the same AND the warehouse still publishes that very release:
a deleted warehouse, a later publish or a rollback make the next `make run` build again.
`make build` itself always builds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# What a build's outcome depends on, relative to the project: folders (every file) and files.
BUILD_INPUTS = ("data", "features", "encoding", "pipelines", "evaluation", "registry", "serving", "cli", "pyproject.toml", "constraints.txt")
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}


def _files(root: Path, inputs: Iterable[str]) -> list[Path]:
    found = []
    for entry in inputs:
        path = root / entry
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file() and not _SKIPPED_PARTS & set(p.parts) and p.suffix != ".pyc"]
    return sorted(found)


def build_key(settings: Mapping[str, str], root: Path = PROJECT, inputs: Iterable[str] = BUILD_INPUTS) -> str:
    """sha256 over every build input's path and content, and the build's settings."""
    digest = hashlib.sha256()
    for path in _files(root, inputs):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps(dict(sorted(settings.items()))).encode())
    return digest.hexdigest()


def _published(warehouse: str) -> dict[str, int] | None:
    from registry.log import published_versions  # lance: only once the environment is installed

    return published_versions(warehouse)


def is_up_to_date(stamp: Path, warehouse: str, settings: Mapping[str, str], root: Path = PROJECT) -> str | None:
    """Why the last build still stands (to print), or None when a build is needed."""
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("key") != build_key(settings, root):
        return None
    published = _published(warehouse)
    if not published or published != {name: int(v) for name, v in recorded.get("published", {}).items()}:
        return None
    return f"inputs, code and settings unchanged since the build that published {published} in {warehouse}"


def write(stamp: Path, warehouse: str, settings: Mapping[str, str], root: Path = PROJECT) -> None:
    """Record the build's key and the release it published (call after publish succeeded)."""
    published = _published(warehouse)
    if not published:
        raise ValueError(f"nothing is published in '{warehouse}': a build that did not publish leaves no stamp")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"key": build_key(settings, root), "published": published}, indent=1) + "\n")


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    """`check`: exit 0 (and say why) when the build can be skipped, 1 when it must run; `write`: record it."""
    parser = argparse.ArgumentParser(prog="python -m cli.build_stamp", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("check", "write"))
    parser.add_argument("--stamp", required=True, type=Path, help="the stamp file")
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--setting", type=_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="a build setting the outcome depends on (repeatable), e.g. TRIALS=30")
    args = parser.parse_args(argv)
    settings = {"WAREHOUSE": args.warehouse, **dict(args.setting)}
    if args.action == "write":
        write(args.stamp, args.warehouse, settings)
        return 0
    reason = is_up_to_date(args.stamp, args.warehouse, settings)
    if reason is None:
        return 1
    print(f"make build skipped: {reason} (`make build` builds anyway)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
