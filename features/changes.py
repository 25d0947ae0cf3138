"""Changes: writes made between batch builds (upserts, deletes, events), kept in one log.

Every acknowledged write is a row of the append-only Lance table `changes`: an item or an
answer document inserted or replaced, an item, answer or user deleted, a user's event. The
log is the source of truth for them, not the served tables:
- a build reads the log at one version (its snapshot) and applies it over its input files,
  so an acknowledged write survives every later build and a delete stays deleted, even
  though the input files still hold the row;
- the build records that version in its tables' metadata (META_CHANGES), so the service
  applies on top of a release exactly the changes its builds had not seen yet.

The order of changes is the order of their commits, the table's own row order read in order:
each commit appends its fragment after the ones before it (a racing append is rebased after
the winner), compaction keeps the fragments' order, and a batch's rows are in `pos` order.
A build reading the whole log and the service reading it a few fragments at a time see
the same sequence; `at` (stamped before the commit, which may retry) only says when.

An upsert's row may also hold the vectors of its texts (`Embeddings`), embedded by the
service's writer or `recqa upsert` before the commit: every follower of the log (another
worker, a restarted service) takes them from there instead of embedding the texts again.
They name their model and are keyed by a digest of each text, so a follower of another model
(by name and dimension) or other chunk sizes finds no match and embeds its own texts; so does
one reading a row without them (`recqa upsert --no-embed`, a log older than these columns).

Pure: the table schema, record validation and the fold of a log into what it means. The
writer is pipelines/lance_io.py; the reader is registry/log.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from features.adapters import ParseOptions, document_from_mapping, interaction_from_mapping, item_from_mapping
from features.errors import InputError
from features.schemas import Interaction, Item, QADocument

CHANGES_TABLE = "changes"
META_CHANGES = b"recqa.changes"  # the `changes` version a build applied ("0": none existed)
ITEMS, ANSWERS, EVENTS, USERS = "items", "answers", "events", "users"
UPSERT, DELETE, EVENT = "upsert", "delete", "event"
UPSERT_KINDS = (ITEMS, ANSWERS)
DELETE_KINDS = (ITEMS, ANSWERS, USERS)
MAX_ID_CHARS = 256
DIGEST_BYTES = 16
CHANGES_SCHEMA = pa.schema(
    [
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),  # when the write was acknowledged
        pa.field("batch", pa.string(), nullable=False),  # one id per commit of the writer
        pa.field("pos", pa.int32(), nullable=False),  # order within the batch
        pa.field("kind", pa.string(), nullable=False),  # items | answers | events | users
        pa.field("op", pa.string(), nullable=False),  # upsert | delete | event
        pa.field("key", pa.string(), nullable=False),  # item_id, doc_id or user_id
        pa.field("record", pa.string(), nullable=True),  # JSON of the contract record (upserts and events)
        # the vectors of an upsert's texts (Embeddings), null when the writer embedded none
        pa.field("model", pa.string(), nullable=True),  # the encoder that embedded them
        pa.field("digests", pa.list_(pa.binary(DIGEST_BYTES)), nullable=True),  # text_digest of each text
        pa.field("vectors", pa.list_(pa.float32()), nullable=True),  # their vectors, one after another
    ]
)
# what a change is without its vectors: what a build reads (it embeds every text itself)
RECORD_COLUMNS = ["kind", "op", "key", "record"]
# the columns a log made before vectors were kept lacks (ensure_changes_table adds them, null)
VECTOR_COLUMNS = ("model", "digests", "vectors")
# the contract fields an upsert or event record may carry: anything else is a caller's typo
FIELDS = {
    ITEMS: frozenset(f.name for f in Item.__dataclass_fields__.values()),
    ANSWERS: frozenset(f.name for f in QADocument.__dataclass_fields__.values()),
    EVENTS: frozenset(f.name for f in Interaction.__dataclass_fields__.values()),
}
_PARSERS = {ITEMS: item_from_mapping, ANSWERS: document_from_mapping, EVENTS: interaction_from_mapping}
_KEYS = {ITEMS: "item_id", ANSWERS: "doc_id", EVENTS: "user_id", USERS: "user_id"}


def text_digest(text: str) -> bytes:
    """The key a text's vector is logged under: 16 bytes instead of the text (chunks of answers
    the record already holds)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The vectors of a change's texts as `model` embedded them, row i the text of `digests[i]`."""

    model: str
    digests: tuple[bytes, ...]
    vectors: np.ndarray  # (len(digests), dimension) float32

    def __post_init__(self) -> None:
        # checked here, so a malformed one fails where it is made (the writer's hook), not the commit
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.digests) or not self.digests:
            raise ValueError(f"{len(self.digests)} digests for vectors of shape {self.vectors.shape}")
        if any(not isinstance(d, bytes) or len(d) != DIGEST_BYTES for d in self.digests):
            raise ValueError(f"digests are {DIGEST_BYTES} bytes (text_digest)")


@dataclass(frozen=True)
class Change:
    """One acknowledged write: what kind of thing, what happened to it, its id, and the record;
    `embeddings`, when the writer embedded its texts, their vectors (not part of its identity)."""

    kind: str
    op: str
    key: str
    record: dict[str, Any] | None = None
    embeddings: Embeddings | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Rejected:
    """A record refused by validation: its index in the request or file, the field at fault, why."""

    index: int
    field: str | None
    reason: str


def parse_records(kind: str, records: Sequence[Any], options: ParseOptions | None = None) -> tuple[list[Change], list[Rejected]]:
    """Upserts (items, answers) or events from contract records; the bad ones rejected by index.

    Each record is checked with the same adapters the build's readers use, so a record the
    log accepts is one the next build accepts too. Good records are kept even when others fail.
    """
    if kind not in _PARSERS:
        raise InputError(f"unknown kind {kind!r}; expected one of {sorted(_PARSERS)}", field="kind")
    parse, op = _PARSERS[kind], EVENT if kind == EVENTS else UPSERT
    options = options or ParseOptions()
    changes, rejected = [], []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            rejected.append(Rejected(index, None, f"expected an object with {sorted(FIELDS[kind])}, got {type(record).__name__}"))
            continue
        if unknown := sorted(set(record) - FIELDS[kind]):
            rejected.append(Rejected(index, unknown[0], f"unknown field {unknown[0]!r}; known: {sorted(FIELDS[kind])}"))
            continue
        if (nul := _nul_field(record)) is not None:  # Lance filters and the FTS tokenizer refuse NUL
            rejected.append(Rejected(index, nul, "contains a NUL character: remove it"))
            continue
        try:
            parsed = parse(record, row=str(index), options=options)
        except InputError as error:
            rejected.append(Rejected(index, error.field, error.reason))
            continue
        value = asdict(parsed)
        if "tags" in value:
            value["tags"] = list(value["tags"])
        key = value[_KEYS[kind]]
        if len(key) > MAX_ID_CHARS:
            rejected.append(Rejected(index, _KEYS[kind], f"longer than {MAX_ID_CHARS} characters"))
            continue
        changes.append(Change(kind, op, key, value))
    return changes, rejected


def _nul_field(record: Mapping[str, Any]) -> str | None:
    """The first field of a record holding a NUL character, in a text or a list of texts."""
    for key, value in record.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in values):
            return str(key)
    return None


def parse_deletes(kind: str, ids: Sequence[Any]) -> tuple[list[Change], list[Rejected]]:
    """Deletes of items, answers or users by id; an empty or non-text id is rejected by index."""
    if kind not in DELETE_KINDS:
        raise InputError(f"cannot delete {kind!r}; expected one of {list(DELETE_KINDS)}", field="kind")
    changes, rejected = [], []
    for index, key in enumerate(ids):
        if not isinstance(key, str) or not key.strip():
            rejected.append(Rejected(index, _KEYS[kind], "expected a non-empty id"))
        elif len(key) > MAX_ID_CHARS or "\x00" in key:
            rejected.append(Rejected(index, _KEYS[kind], f"ids are at most {MAX_ID_CHARS} characters, without NUL"))
        else:
            changes.append(Change(kind, DELETE, key))
    return changes, rejected


def change_rows(changes: Sequence[Change], at: datetime, batch: str) -> list[dict[str, Any]]:
    """The rows of CHANGES_SCHEMA for one commit of the writer."""
    return [
        {"at": at, "batch": batch, "pos": pos, "kind": c.kind, "op": c.op, "key": c.key,
         "record": None if c.record is None else json.dumps(c.record, sort_keys=True), **_embedding_columns(c.embeddings)}
        for pos, c in enumerate(changes)
    ]


def _embedding_columns(embeddings: Embeddings | None) -> dict[str, Any]:
    if embeddings is None:
        return {"model": None, "digests": None, "vectors": None}
    vectors = np.asarray(embeddings.vectors, dtype=np.float32)
    return {"model": embeddings.model, "digests": list(embeddings.digests), "vectors": vectors.reshape(-1)}


def rows_to_arrow(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=CHANGES_SCHEMA)


def changes_from_arrow(table: pa.Table) -> list[Change]:
    """The changes a table holds, in its row order: commit order when the log is read in order.
    Their embeddings come with them when the table has the vector columns (a reader that needs
    none leaves those columns out of its read)."""
    rows = table.select(RECORD_COLUMNS).to_pylist()
    embeddings = _embeddings_from_arrow(table) if set(VECTOR_COLUMNS) <= set(table.column_names) else [None] * len(rows)
    return [
        Change(r["kind"], r["op"], r["key"], None if r["record"] is None else json.loads(r["record"]), found)
        for r, found in zip(rows, embeddings)
    ]


def _embeddings_from_arrow(table: pa.Table) -> list[Embeddings | None]:
    """Each row's Embeddings, its vectors sliced out of one array (not a Python float each)."""
    models = table.column("model").to_pylist()
    digests = table.column("digests").to_pylist()
    vectors = table.column("vectors").combine_chunks()
    offsets = vectors.offsets.to_numpy()  # of this (maybe sliced) array, into `values`, which ignores the slice
    values = vectors.values.to_numpy(zero_copy_only=False) if len(vectors) else np.zeros(0, dtype=np.float32)
    missing = vectors.is_null().to_numpy(zero_copy_only=False)
    found: list[Embeddings | None] = []
    for row, (model, keys) in enumerate(zip(models, digests)):
        if model is None or not keys or missing[row]:
            found.append(None)
            continue
        flat = values[offsets[row]:offsets[row + 1]]
        if len(flat) % len(keys):  # not a vector per text: the follower embeds these texts itself
            found.append(None)
            continue
        found.append(Embeddings(model, tuple(keys), flat.reshape(len(keys), -1)))
    return found


@dataclass(frozen=True)
class ChangeSet:
    """What a sequence of changes means, folded: the latest state of each id it touched.

    `items` and `answers` map an id to its latest record, or None when its latest change is a
    delete: an input row with that id is replaced or dropped either way. `events` are the
    logged events that still count, and `forgotten` the users whose deletion drops every
    earlier event of theirs, the input files' included.
    """

    items: dict[str, Item | None] = field(default_factory=dict)
    answers: dict[str, QADocument | None] = field(default_factory=dict)
    events: tuple[Interaction, ...] = ()
    forgotten: frozenset[str] = frozenset()
    # every event since the last forget of its user, deleted items' included: an item deleted and
    # then upserted again counts its earlier events, so a fold continued from here needs them
    logged: tuple[Interaction, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items or self.answers or self.events or self.forgotten)

    def upserted_items(self) -> list[Item]:
        return [item for item in self.items.values() if item is not None]

    def upserted_answers(self) -> list[QADocument]:
        return [document for document in self.answers.values() if document is not None]

    def deleted(self, kind: str) -> frozenset[str]:
        """Ids whose latest change is a delete (items or answers), or the forgotten users."""
        if kind == USERS:
            return self.forgotten
        return frozenset(key for key, value in getattr(self, kind).items() if value is None)

    def keeps_item(self, item: Item) -> bool:
        """Whether an input file's item stays as it is (no later upsert or delete of its id)."""
        return item.item_id not in self.items

    def keeps_answer(self, document: QADocument) -> bool:
        """Whether an input file's answer document stays as it is."""
        return document.doc_id not in self.answers

    def keeps_event(self, event: Interaction) -> bool:
        """Whether an input file's event still counts: its user not forgotten, its item not deleted."""
        return event.user_id not in self.forgotten and self.items.get(event.item_id, True) is not None


def fold(changes: Iterable[Change], start: ChangeSet | None = None) -> ChangeSet:
    """The ChangeSet of changes given in the order they were acknowledged, continued from
    `start` (the fold of the changes before them): `fold(b, fold(a)) == fold(a + b)`, so a
    reader that follows the log folds only what is new to it."""
    start = start or ChangeSet()
    items: dict[str, Item | None] = dict(start.items)
    answers: dict[str, QADocument | None] = dict(start.answers)
    events: list[Interaction] = list(start.logged)
    forgotten: set[str] = set(start.forgotten)
    for change in changes:
        if change.kind == ITEMS:
            items[change.key] = Item(**change.record) if change.op == UPSERT else None
        elif change.kind == ANSWERS:
            answers[change.key] = QADocument(**{**change.record, "tags": tuple(change.record.get("tags") or ())}) if change.op == UPSERT else None
        elif change.kind == EVENTS:
            events.append(Interaction(**change.record))
        elif change.kind == USERS:
            forgotten.add(change.key)
            events = [e for e in events if e.user_id != change.key]  # their history up to now is forgotten
    kept = tuple(e for e in events if items.get(e.item_id, True) is not None)
    return ChangeSet(items, answers, kept, frozenset(forgotten), tuple(events))
