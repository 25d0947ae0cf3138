"""Turn the bundled datasets and contract-shaped mappings into input-contract records.

Pure functions over already-read values: the pipelines do the reading. Each raises
InputError naming the row and field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from features.errors import InputError
from features.interactions import DEFAULT_EVENT_WEIGHTS
from features.schemas import Interaction, Item, QADocument
from features.timestamps import parse_timestamp

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


def interaction_from_mapping(record: Mapping[str, Any], row: str) -> Interaction:
    """An Interaction from a contract-shaped mapping (CSV with header, JSONL)."""
    value = _optional_number(record.get("value"), "value", row)
    if value is not None and value < 0:
        raise InputError(f"negative value {value}", field="value", row=row)
    event = _optional_text(record.get("event"), "event", row)
    if event is not None:
        event = event.lower()
        if event not in DEFAULT_EVENT_WEIGHTS:
            raise InputError(f"unknown event {event!r}; expected one of {sorted(DEFAULT_EVENT_WEIGHTS)}", field="event", row=row)
    return Interaction(
        user_id=_required_text(record.get("user_id"), "user_id", row),
        item_id=_required_text(record.get("item_id"), "item_id", row),
        timestamp=parse_timestamp(record.get("timestamp"), row=row),
        event=event,
        value=value,
    )


def item_from_mapping(record: Mapping[str, Any], row: str) -> Item:
    """An Item from a contract-shaped mapping."""
    return Item(
        item_id=_required_text(record.get("item_id"), "item_id", row),
        title=_required_text(record.get("title"), "title", row),
        text=_optional_text(record.get("text"), "text", row),
        category=_optional_text(record.get("category"), "category", row),
    )


def document_from_mapping(record: Mapping[str, Any], row: str) -> QADocument:
    """A QADocument from a contract-shaped mapping; tags may be a list or a comma list."""
    tags = record.get("tags") or ()
    if isinstance(tags, str):
        tags = [t for t in (part.strip() for part in tags.split(",")) if t]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise InputError("expected a list of strings", field="tags", row=row)
    return QADocument(
        doc_id=_required_text(record.get("doc_id"), "doc_id", row),
        answer=_required_text(record.get("answer"), "answer", row),
        question=_optional_text(record.get("question"), "question", row),
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


def stackfaq_documents(data: Mapping[str, Any]) -> list[QADocument]:
    """One QADocument per answer of every thread; doc_id = thread id + answer index."""
    documents = []
    for t, thread in enumerate(_stackfaq_threads(data)):
        row = f"root.qapair[{t}]"
        question = _optional_text(thread.get("question"), "question", row)
        answers = thread.get("answer") or []
        if isinstance(answers, str):  # a thread with a single answer may be stored unwrapped
            answers = [answers]
        for a, answer in enumerate(answers):
            documents.append(
                document_from_mapping(
                    {
                        "doc_id": f"{stackfaq_thread_id(t)}-{a:02d}",
                        "question": question,
                        "answer": answer,
                        "source": "stackexchange",
                    },
                    f"{row}.answer[{a}]",
                )
            )
    return documents


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
