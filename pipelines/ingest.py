"""`recqa upsert items|answers FILE`, `recqa ingest-events FILE`, `recqa delete items|answers|users ID...`.

The write API's batch mirrors: a file read with the builds' own readers (`--input-format`,
`--map`, `--map-<input>`, local or `s3://`), each record checked as the write API checks it,
then appended to the change log (<warehouse>/changes.lance) through the one writer, in
commits of BATCH_SIZE records. The next build applies them over its input files; a service
overlays them on the release it serves.

`recqa upsert` embeds the texts of what it writes with the model the published table
records (answers chunked as that table was), as the service's writer embeds an API write,
and keeps the vectors in the log: no service embeds them again, at a restart either
(features/change_vectors.py). `--no-embed` leaves them to the services, as does a model that
cannot be loaded here (a warning says so); with no release published yet there is nothing to
embed for.

Bad rows are counted and up to EXAMPLES shown. More than `--max-reject-fraction` of them
fails the command before anything is written; otherwise the good ones are written and the
bad ones left out. A failure between two commits leaves the earlier commits written: the
command says how many were, so the rest can be sent again (an upsert or delete sent twice
means the same as once).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from features.adapters import DEFAULT_MAX_TEXT_CHARS, ParseOptions
from features.change_vectors import change_texts, embed_changes
from features.changes import ANSWERS, DELETE_KINDS, EVENTS, ITEMS, Change, Rejected, parse_deletes, parse_records
from features.errors import InputError
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, META_ENCODER
from features.text import chunking_of
from features.timestamps import AUTO, check_timestamp_format
from pipelines import lance_io
from pipelines.flags import add_warehouse_argument
from pipelines.options import command_parser, parse_flags
from pipelines.transforms.quality import DEFAULT_MAX_REJECT_FRACTION
from pipelines.transforms.read import CONTRACT, MS_STORE, STACKFAQ, InputSpec, ensure_filesystem_options, input_mappings, read_input
from registry.log import published_versions

BATCH_SIZE = 5_000  # records per commit of the change log: few versions for a big file, bounded memory per commit
EXAMPLES = 3  # rejected rows shown
# change-log kind -> the build input whose reader, formats and --map-<input> flag a file of it takes
INPUTS = {ITEMS: ("items", (CONTRACT, MS_STORE)), ANSWERS: ("documents", (CONTRACT, STACKFAQ)), EVENTS: ("interactions", (CONTRACT, MS_STORE))}


@dataclass(frozen=True)
class IngestResult:
    """What a command wrote to the change log: counts, a few rejects, the version holding the last commit."""

    what: str
    accepted: int
    rejected: int
    version: int
    commits: int
    sample: list[str] = field(default_factory=list)
    embedded: int = 0  # texts whose vectors went into the log with them
    model: str = ""  # the model that embedded them
    embed_failure: str = ""  # why the texts of some records were not embedded

    def summary(self) -> str:
        lines = [f"  {self.what:<12} accepted {self.accepted:>8}  rejected {self.rejected:>6}  change log version {self.version}"
                 f" ({self.commits} commit{'s' if self.commits != 1 else ''})"]
        if self.embedded:
            lines.append(f"      {self.embedded} texts embedded with '{self.model}' (the published table's model) and logged with them")
        if self.embed_failure:
            lines.append(f"      warning: texts not embedded with '{self.model}' ({self.embed_failure}): written without their vectors, "
                         "each service embeds them when it reads them (--no-embed skips the attempt)")
        lines.extend(f"      e.g. {example}" for example in self.sample[:EXAMPLES])
        return "\n".join(lines)


def _common(parser: argparse.ArgumentParser) -> None:
    add_warehouse_argument(parser, "whose change log (changes.lance) receives the writes")
    parser.add_argument("--max-reject-fraction", type=float, default=DEFAULT_MAX_REJECT_FRACTION,
                        help="write nothing when more than this fraction of the records is rejected (default 0.01)")


def _file_parser(prog: str, description: str, kind: str | None) -> argparse.ArgumentParser:
    """The flags of a command reading a file as a build reads its input (`kind` None: items or answers, given first)."""
    parser = command_parser(prog, description, epilog=__doc__.split("\n\n")[1])
    if kind is None:
        parser.add_argument("kind", choices=[ITEMS, ANSWERS], help="items (as build-recs --items) or answers (as build-qa --documents)")
    parser.add_argument("file", metavar="FILE", help="file, glob or URI, in a layout a build reads (--input-format)")
    _common(parser)
    parser.add_argument("--input-format", default=CONTRACT, choices=[CONTRACT, MS_STORE, STACKFAQ],
                        help="layout of FILE: contract (CSV with header, JSON lines, Parquet), or a bundled dataset's (ms-store, stackfaq)")
    parser.add_argument("--map", action="append", metavar="COLUMN=SOURCE",
                        help="contract column from a differently named source column (repeatable; default: none)")
    for name in sorted({INPUTS[k][0] for k in ([kind] if kind else [ITEMS, ANSWERS])}):
        parser.add_argument(f"--map-{name}", action="append", metavar="COLUMN=SOURCE", help="as --map, and wins over it (repeatable; default: none)")
    parser.add_argument("--timestamp-format", default=AUTO, help="auto, epoch_s, epoch_ms, iso, or a strftime pattern")
    parser.add_argument("--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS, help="rows with a longer text are rejected")
    if kind is None:
        parser.add_argument("--no-embed", action="store_true",
                            help="log the records without their texts' vectors: each service embeds them when it reads them "
                                 "(default: embedded here with the published table's model)")
    return parser


def _mapping(record: Any) -> dict[str, Any]:
    value = asdict(record)
    if "tags" in value:
        value["tags"] = list(value["tags"])
    return value


class Embedder:
    """Embeds upserts' texts as a service's follower would, with the model and chunking the
    published table of their kind records; the model is loaded on the first commit.

    The vectors only spare the services work: when the model cannot be loaded or a batch
    cannot be embedded, the records are written without them (the services embed them) and
    `failure` says why."""

    def __init__(self, model: str, chunking: tuple[int, int] | None, items: bool) -> None:
        self.model, self._chunking, self._items = model, chunking, items
        self._encoder = None
        self.failure = ""

    def __call__(self, changes: list[Change]) -> list[Change]:
        if self.failure:
            return changes
        try:
            if self._encoder is None:
                from pipelines.transforms.encode import load_encoder

                self._encoder = load_encoder(self.model)
            return embed_changes(self._encoder, changes, lambda change: change_texts(change, self._chunking, self._items))
        except Exception as error:  # noqa: BLE001 - the write goes on; say why its texts were not embedded
            self.failure = f"{type(error).__name__}: {error}"
            return changes


def embedder(warehouse: str, kind: str) -> Embedder | None:
    """What embeds upserts of `kind` for the warehouse's published release; None when no
    release names that kind's table (nothing serves it yet: the build embeds them)."""
    metadata = lance_io.published_metadata(warehouse, {ANSWERS: ANSWERS_TABLE, ITEMS: ITEMS_TABLE}[kind], published_versions(warehouse))
    if metadata is None:
        return None
    model = metadata.get(META_ENCODER, b"").decode()
    if not model:
        return None
    return Embedder(model, chunking_of(metadata) if kind == ANSWERS else None, items=kind == ITEMS)


def _write(warehouse: str, what: str, changes: list[Change], rejected: int, total: int, sample: list[str],
           max_fraction: float, embed: Embedder | None = None) -> IngestResult:
    """Refuse the lot when too much was rejected; else append the changes in commits of
    BATCH_SIZE, each commit's texts embedded first by `embed` when given."""
    if total == 0:
        raise InputError(f"no {what} records to write", field=what)
    if rejected and (not changes or rejected / total > max_fraction):
        raise InputError(f"{rejected} of {total} {what} records rejected ({rejected / total:.2%}), above the limit of {max_fraction:.2%}; "
                         f"nothing was written; for example: {'; '.join(sample[:EXAMPLES])}\n  hint: fix those rows, or write "
                         f"the others with a higher --max-reject-fraction (now {max_fraction:g})", field=what)
    version, commits, embedded = 0, 0, 0
    for start in range(0, len(changes), BATCH_SIZE):
        batch = changes[start:start + BATCH_SIZE]
        try:
            if embed is not None:
                batch = embed(batch)
                embedded += sum(len(c.embeddings.digests) for c in batch if c.embeddings is not None)
            version = lance_io.append_changes(warehouse, batch)
        except Exception as error:
            raise RuntimeError(f"{start} of {len(changes)} {what} records were written (change log version {version}) before: {error}; "
                               "send the rest again") from error
        commits += 1
    return IngestResult(what, len(changes), rejected, version, commits, sample, embedded, embed.model if embed else "",
                        embed.failure if embed else "")


def _rejected_text(rejects: Sequence[Rejected], label: str) -> list[str]:
    return [f"{label} {r.index + 1}: " + (f"field '{r.field}': " if r.field else "") + r.reason for r in rejects]


def _ingest_file(args: argparse.Namespace, kind: str) -> IngestResult:
    """Read FILE as the build reads its input; check each record as the write API does; log them."""
    input_kind, formats = INPUTS[kind]
    if args.input_format not in formats:
        raise InputError(f"{kind} are read as {' or '.join(formats)}, not {args.input_format}", field="--input-format")
    options = ParseOptions(check_timestamp_format(args.timestamp_format), args.max_text_chars)
    mapping = input_mappings(args.map, {input_kind: getattr(args, f"map_{input_kind}", None)})[input_kind]
    ensure_filesystem_options()
    read = read_input(InputSpec(input_kind, args.file, args.input_format, mapping, options))
    # checked again as the write API checks a record; its timestamp is epoch seconds by now, whatever the file's format
    changes, rejects = parse_records(kind, [_mapping(r) for r in read.records], ParseOptions(max_text_chars=args.max_text_chars))
    sample = [f"{r['file']}:{r['line']}: {r['reason']}" for r in read.sample] + _rejected_text(rejects, "valid row")
    total = read.valid + read.rejected
    embed = None if kind == EVENTS or args.no_embed else embedder(args.warehouse, kind)
    return _write(args.warehouse, kind, changes, read.rejected + len(rejects), total, sample, args.max_reject_fraction, embed)


def upsert_parser() -> argparse.ArgumentParser:
    return _file_parser("recqa upsert", "Insert or replace items or answer documents: logged for the service and every later build.", None)


def ingest_events_parser() -> argparse.ArgumentParser:
    return _file_parser("recqa ingest-events", "Log users' events: counted by the next build-recs, folded into their vectors by the service.",
                        EVENTS)


def delete_parser() -> argparse.ArgumentParser:
    parser = command_parser("recqa delete", "Delete items, answer documents or users by id: gone from serving and from every later build.",
                            epilog=__doc__.split("\n\n")[1])
    parser.add_argument("kind", choices=list(DELETE_KINDS), help="what the ids name")
    parser.add_argument("ids", nargs="*", metavar="ID", help="ids to delete")
    parser.add_argument("--ids-file", default=None, metavar="FILE", help="also the ids of this file, one a line (blank lines skipped)")
    _common(parser)
    return parser


def upsert(argv: Sequence[str] | None = None) -> IngestResult:
    """`recqa upsert items|answers FILE`: insert or replace items (by item_id) or answer documents (by doc_id)."""
    args = parse_flags(upsert_parser(), argv)
    mapped = {ITEMS: "map_items", ANSWERS: "map_documents"}
    other = mapped[ANSWERS if args.kind == ITEMS else ITEMS]
    if getattr(args, other):
        raise InputError(f"{args.kind} take --map-{'items' if args.kind == ITEMS else 'documents'}, not this one",
                         field=f"--{other.replace('_', '-')}")
    return _ingest_file(args, args.kind)


def ingest_events(argv: Sequence[str] | None = None) -> IngestResult:
    """`recqa ingest-events FILE`: users' events, read as build-recs reads --interactions."""
    return _ingest_file(parse_flags(ingest_events_parser(), argv), EVENTS)


def delete(argv: Sequence[str] | None = None) -> IngestResult:
    """`recqa delete items|answers|users ID... [--ids-file FILE]`: delete by id; a user's events are forgotten with them."""
    args = parse_flags(delete_parser(), argv)
    ids = list(args.ids)
    if args.ids_file:
        ids += _read_ids(args.ids_file)
    if not ids:
        raise InputError("no ids given; name them after the kind or with --ids-file FILE", field="ID")
    changes, rejects = parse_deletes(args.kind, ids)
    return _write(args.warehouse, f"{args.kind}", changes, len(rejects), len(ids), _rejected_text(rejects, "id"), args.max_reject_fraction)


def _read_ids(path: str) -> list[str]:
    """One id a line, through Beam's file systems (local or a URI); surrounding spaces are not part of an id."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.transforms.read import check_input

    check_input(path, "--ids-file")
    with FileSystems.open(path) as handle:
        text = handle.read().decode("utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]
