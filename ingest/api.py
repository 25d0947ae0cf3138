"""Request and response models of the write API; their JSON schemas become the OpenAPI docs.

The models check the envelope only (an object, known keys, a list of 1..MAX records). Each
record is checked by `features.changes.parse_records`, the adapters the builds use, so one bad
record is rejected by index while the others land. The record models below describe the
contract for the docs; they are not what validates a record.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

MAX_RECORDS_PER_REQUEST = 1_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown key is a caller's typo: 400 naming it


class ItemRecord(_Model):
    """A catalogue item to insert or replace (by item_id)."""

    item_id: str = Field(description="The item's id; an item with this id is replaced.", max_length=256)
    title: str = Field(description="Title, up to 20,000 characters.")
    text: str | None = Field(None, description="Description embedded with the title.")
    category: str | None = Field(None, description="Category, for the filters.")


class AnswerRecord(_Model):
    """An answer document to insert or replace (by doc_id, all its chunks)."""

    doc_id: str = Field(description="The document's id; a document with this id is replaced.", max_length=256)
    answer: str = Field(description="The answer text, up to 20,000 characters.")
    question: str | None = Field(None, description="The question it answers.")
    source: str | None = Field(None, description="Where it comes from, for the filters.")
    tags: list[str] = Field(default_factory=list, description="Tags, for the filters (a comma list is accepted too).")


class EventRecord(_Model):
    """A user's event on an item."""

    user_id: str = Field(description="The user.", max_length=256)
    item_id: str = Field(description="The item.", max_length=256)
    timestamp: float | str = Field(description="Seconds since the epoch, or an ISO 8601 time.")
    event: str | None = Field(None, description="The event type (its weight is the build's); default a purchase.")
    value: float | None = Field(None, description="A non-negative value (e.g. quantity).")


def _records(record: type[BaseModel], what: str) -> Any:
    schema = {"type": "array", "items": record.model_json_schema(), "minItems": 1, "maxItems": MAX_RECORDS_PER_REQUEST}
    return Annotated[
        list[Any],
        Field(min_length=1, max_length=MAX_RECORDS_PER_REQUEST, description=f"{what}, 1 to {MAX_RECORDS_PER_REQUEST:,}; each is checked on its own."),
        WithJsonSchema(schema),
    ]


class IngestItems(_Model):
    items: _records(ItemRecord, "Items to insert or replace")  # type: ignore[valid-type]


class IngestAnswers(_Model):
    answers: _records(AnswerRecord, "Answer documents to insert or replace")  # type: ignore[valid-type]


class IngestEvents(_Model):
    events: _records(EventRecord, "Events to add")  # type: ignore[valid-type]


_Ids = Annotated[list[Any], Field(default_factory=list, max_length=MAX_RECORDS_PER_REQUEST), WithJsonSchema({"type": "array", "items": {"type": "string"}})]


class IngestDelete(_Model):
    items: _Ids = Field(default_factory=list, description="item_ids to delete (an unknown id is kept as a tombstone).")
    answers: _Ids = Field(default_factory=list, description="doc_ids to delete, with all their chunks.")
    users: _Ids = Field(default_factory=list, description="user_ids to forget: their vector and events.")

    @model_validator(mode="after")
    def _some_bounded(self) -> "IngestDelete":
        total = len(self.items) + len(self.answers) + len(self.users)
        if total == 0:
            raise ValueError("no ids: send at least one id in items, answers or users")
        if total > MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"{total:,} ids: send at most {MAX_RECORDS_PER_REQUEST:,} per request")
        return self


class RejectedRecord(BaseModel):
    index: int = Field(description="Position of the record (or id) in its list.")
    field: str | None = Field(description="The field at fault; for deletes, the list (items, answers or users).")
    reason: str = Field(description="Why, and what to send instead.")


class IngestResult(BaseModel):
    accepted: int = Field(description="Records written: durable in the change log when this answer is sent.")
    rejected: list[RejectedRecord] = Field(description="Records refused, by index; the others were written.")
    visible_by: str = Field(description="ISO 8601 time (UTC) by which the read endpoints show the accepted records.")
    version: int = Field(description="The change log version holding them.")


BODIES: dict[str, type[_Model]] = {"items": IngestItems, "answers": IngestAnswers, "events": IngestEvents, "delete": IngestDelete}
RECORDS: tuple[type[BaseModel], ...] = (ItemRecord, AnswerRecord, EventRecord)
