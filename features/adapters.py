"""Turn the bundled datasets and contract-shaped mappings into input-contract records.

Pure functions over already-read values: the pipelines do the reading. Each raises
InputError naming the row and field at fault.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from features.errors import InputError
from features.interactions import DEFAULT_EVENT_WEIGHTS
from features.schemas import Interaction, Item, QADocument
from features.timestamps import AUTO, parse_timestamp

# Longer texts are almost always a broken export (a whole file in one cell), not content.
DEFAULT_MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class ParseOptions:
    """How contract records are validated; one object shared by every row of a run."""

    timestamp_format: str = AUTO
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    events: frozenset[str] = frozenset(DEFAULT_EVENT_WEIGHTS)


_DEFAULT_OPTIONS = ParseOptions()

# The input contract's columns per input, required ones first (data/README.md documents them).
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "timestamp", "event", "value"),
    "items": ("item_id", "title", "text", "category"),
    "documents": ("doc_id", "answer", "question", "source", "tags"),
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "timestamp"),
    "items": ("item_id", "title"),
    "documents": ("doc_id", "answer"),
}
_MAX_LISTED_COLUMNS = 20


def check_mapping(kind: str, mapping: Mapping[str, str], flag: str) -> None:
    """Refuse a mapping onto a column the input's contract does not have, naming the ones it has.

    A misspelt contract name (`--map-items titel=Name`) would otherwise map nothing, silently.
    """
    if unknown := sorted(set(mapping) - set(CONTRACT_COLUMNS[kind])):
        raise InputError(f"{kind} have no contract column {', '.join(map(repr, unknown))}; "
                         f"their columns: {', '.join(CONTRACT_COLUMNS[kind])}", field=flag)


def check_columns(kind: str, mapping: Mapping[str, str], columns: Sequence[str], where: str, flag: str,
                  defaults: Sequence[str] = ()) -> None:
    """Refuse a file whose columns lack a mapped source column or a required contract column.

    `columns` are the file's (a CSV header, a Parquet schema, the keys of a first JSON line);
    `defaults` are contract columns its layout supplies without a column. Checked once per file,
    so a misnamed column fails before any row is read, not as every row rejected.
    """
    present = set(columns)
    listed = ", ".join(map(str, columns[:_MAX_LISTED_COLUMNS])) + (", ..." if len(columns) > _MAX_LISTED_COLUMNS else "")
    for column in CONTRACT_COLUMNS[kind]:
        source = mapping.get(column, column)
        if source in present or (column not in mapping and (column not in REQUIRED_COLUMNS[kind] or column in defaults)):
            continue
        close = difflib.get_close_matches(source, [str(c) for c in columns], n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        fix = f"set {flag} {column}=COLUMN" if column in mapping else f"name the column holding {column} with {flag} {column}=COLUMN"
        raise InputError(f"{where}: no column {source!r}{f' for {column}' if column in mapping else ''} "
                         f"(columns: {listed}){guess}; {fix}", field=flag)

# StackFAQ marks a missing rephrasing with "*"; it is a placeholder, not a query.
_STACKFAQ_PLACEHOLDER = "*"


def _required_text(value: Any, field: str, row: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise InputError("missing value", field=field, row=row)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputError(f"expected a string, got {type(value).__name__}", field=field, row=row)
    text = str(value).strip()
    if not text:
        raise InputError("empty value", field=field, row=row)
    return text


def _optional_text(value: Any, field: str, row: str) -> str | None:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise InputError(f"expected a string, got {type(value).__name__}", field=field, row=row)
    return str(value).strip() or None


def _bounded(text: str | None, field: str, row: str, options: ParseOptions) -> str | None:
    if text is not None and len(text) > options.max_text_chars:
        raise InputError(f"text of {len(text)} characters exceeds the limit of {options.max_text_chars}", field=field, row=row)
    return text


def _optional_number(value: Any, field: str, row: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", field=field, row=row) from None
    if math.isnan(number) or math.isinf(number):
        raise InputError(f"expected a finite number, got {value!r}", field=field, row=row)
    return number


def interaction_from_mapping(record: Mapping[str, Any], row: str, options: ParseOptions = _DEFAULT_OPTIONS) -> Interaction:
    """An Interaction from a contract-shaped mapping (CSV with header, JSONL, Parquet)."""
    value = _optional_number(record.get("value"), "value", row)
    if value is not None and value < 0:
        raise InputError(f"negative value {value}", field="value", row=row)
    event = _optional_text(record.get("event"), "event", row)
    if event is not None:
        event = event.lower()
        if event not in options.events:
            raise InputError(f"unknown event {event!r}; expected one of {sorted(options.events)}", field="event", row=row)
    return Interaction(
        user_id=_required_text(record.get("user_id"), "user_id", row),
        item_id=_required_text(record.get("item_id"), "item_id", row),
        timestamp=parse_timestamp(record.get("timestamp"), row=row, fmt=options.timestamp_format),
        event=event,
        value=value,
    )


def item_from_mapping(record: Mapping[str, Any], row: str, options: ParseOptions = _DEFAULT_OPTIONS) -> Item:
    """An Item from a contract-shaped mapping."""
    return Item(
        item_id=_required_text(record.get("item_id"), "item_id", row),
        title=_bounded(_required_text(record.get("title"), "title", row), "title", row, options),
        text=_bounded(_optional_text(record.get("text"), "text", row), "text", row, options),
        category=_optional_text(record.get("category"), "category", row),
    )


def document_from_mapping(record: Mapping[str, Any], row: str, options: ParseOptions = _DEFAULT_OPTIONS) -> QADocument:
    """A QADocument from a contract-shaped mapping; tags may be a list or a comma list."""
    tags = record.get("tags")
    if tags is None or (isinstance(tags, float) and math.isnan(tags)):
        tags = ()
    if isinstance(tags, str):
        tags = [t for t in (part.strip() for part in tags.split(",")) if t]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise InputError("expected a list of strings", field="tags", row=row)
    return QADocument(
        doc_id=_required_text(record.get("doc_id"), "doc_id", row),
        answer=_bounded(_required_text(record.get("answer"), "answer", row), "answer", row, options),
        question=_bounded(_optional_text(record.get("question"), "question", row), "question", row, options),
        source=_optional_text(record.get("source"), "source", row),
        tags=tuple(tags),
    )


def ms_store_interaction(fields: Sequence[str], row: str) -> Interaction:
    """ms-store demoUsage.csv: no header, `userId,itemId,timestamp`; every row is a purchase."""
    if len(fields) != 3:
        raise InputError(f"expected 3 columns (userId,itemId,timestamp), got {len(fields)}", row=row)
    user_id, item_id, timestamp = fields
    return interaction_from_mapping(
        {"user_id": user_id, "item_id": item_id, "timestamp": timestamp, "event": "purchase"}, row
    )


def ms_store_item(fields: Sequence[str], row: str) -> Item:
    """ms-store demoCatalog.csv: no header, `itemId,title,category`."""
    if len(fields) != 3:
        raise InputError(f"expected 3 columns (itemId,title,category), got {len(fields)}", row=row)
    item_id, title, category = fields
    return item_from_mapping({"item_id": item_id, "title": title, "category": category}, row)


def stackfaq_thread_id(index: int) -> str:
    """Stable id of the index-th StackFAQ thread; answer doc_ids start with it."""
    return f"stackfaq-{index:03d}"


def _stackfaq_threads(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    try:
        threads = data["root"]["qapair"]
    except (KeyError, TypeError):
        raise InputError("expected an object with root.qapair[]", field="root.qapair") from None
    if not isinstance(threads, list):
        raise InputError("expected a list", field="root.qapair")
    return threads


def stackfaq_records(data: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(row label, contract record) per answer of every thread; doc_id = thread id + answer index."""
    records = []
    for t, thread in enumerate(_stackfaq_threads(data)):
        answers = thread.get("answer") or []
        if isinstance(answers, str):  # a thread with a single answer is stored unwrapped
            answers = [answers]
        for a, answer in enumerate(answers):
            record = {
                "doc_id": f"{stackfaq_thread_id(t)}-{a:02d}",
                "question": thread.get("question"),
                "answer": answer,
                "source": "stackexchange",
            }
            records.append((f"root.qapair[{t}].answer[{a}]", record))
    return records


def stackfaq_documents(data: Mapping[str, Any]) -> list[QADocument]:
    """One QADocument per answer of every thread."""
    return [document_from_mapping(record, row) for row, record in stackfaq_records(data)]


def stackfaq_queries(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(rephrasing, thread id) pairs: the StackFAQ queries and the thread each belongs to."""
    queries = []
    for t, thread in enumerate(_stackfaq_threads(data)):
        rephrasings = thread.get("rephr") or []
        if isinstance(rephrasings, str):
            rephrasings = [rephrasings]
        for text in rephrasings:
            if isinstance(text, str) and text.strip() and text.strip() != _STACKFAQ_PLACEHOLDER:
                queries.append((text.strip(), stackfaq_thread_id(t)))
    return queries
